"""deflect: a self-hosted knowledge-base deflection engine.

Importing the package stays cheap: torch, faiss and sentence-transformers load lazily.
"""

__version__ = "0.1.0"
