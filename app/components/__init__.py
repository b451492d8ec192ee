"""What every console page shares: the signed-in principal, navigation by role, error boxes, formatting, charts.

`app/` is the main script's directory, which Streamlit puts on `sys.path`, so pages import `components.*`.
"""
