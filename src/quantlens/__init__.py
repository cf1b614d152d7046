"""quantlens: which precision should an image classifier run in, and what does it cost?"""

__version__ = "0.1.0"
