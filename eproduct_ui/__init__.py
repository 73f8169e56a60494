"""App helpers for the Streamlit app: cached loaders, the workspace chooser, charts and one view per page.

May import streamlit (the core, eproduct_core, never does). Pages in app_pages/ are thin: each calls one
`views.<page>.render()` through `guard.page_boundary`, which turns an `EproductError` into `st.error`.
"""
