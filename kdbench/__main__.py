from kdbench.cli.main import main

main()
