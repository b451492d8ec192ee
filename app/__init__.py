"""The Streamlit console: `streamlit run app/main.py` (or `make demo`)."""
