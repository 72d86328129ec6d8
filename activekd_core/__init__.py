"""ActiveKD Studio core: teacher, student, selection, store and projects, free of Streamlit.

Everything the app shows is computed here and can be tested without a browser.
"""

__version__ = "0.1.0"
