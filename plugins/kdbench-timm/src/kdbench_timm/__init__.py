"""timm models for kdbench: ``timm/<model_name>`` teachers and students."""

__version__ = "0.1.0"
