"""eproduct's Streamlit app: `streamlit run app.py`.

Page config and the navigation. Each page in pages/ is thin: through eproduct_ui.guard it draws the
first-run demo build and the sidebar workspace chooser, then its view from eproduct_ui.views; all
computing happens in eproduct_core.
"""

import logging
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import streamlit as st  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
st.set_page_config(page_title="eproduct: product visual search", page_icon="assets/logo.png", layout="wide")

PAGES = [
    st.Page("pages/search.py", title="Search", icon=":material/image_search:", default=True),
    st.Page("pages/catalog.py", title="Catalog", icon=":material/category:"),
    st.Page("pages/model.py", title="Model", icon=":material/model_training:"),
    st.Page("pages/evaluation.py", title="Evaluation", icon=":material/analytics:"),
    st.Page("pages/index.py", title="Index", icon=":material/storage:", url_path="index-info"),
]

st.logo("assets/logo.png", size="large")
navigation = st.navigation(PAGES)
navigation.run()
