"""eproduct's Streamlit app: `streamlit run app.py`.

Page config and the navigation. Each page in app_pages/ is thin: through eproduct_ui.guard it draws the
first-run demo build and the sidebar workspace chooser, then its view from eproduct_ui.views; all
computing happens in eproduct_core. The first run of the process starts the background model warm-up.

The page files live in app_pages/, not pages/: Streamlit treats a folder named pages/ beside the
entry point as a legacy multipage app until st.navigation first runs, so a fresh server opened on a
sub-page URL would skip this file (no navigation, wrong page names, "page not found").
"""

import logging
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import streamlit as st  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
st.set_page_config(page_title="eproduct: product visual search", page_icon="assets/logo.png", layout="wide")

PAGES = [
    st.Page("app_pages/search.py", title="Search", icon=":material/image_search:", default=True),
    st.Page("app_pages/catalog.py", title="Catalog", icon=":material/category:"),
    st.Page("app_pages/model.py", title="Model", icon=":material/model_training:"),
    st.Page("app_pages/evaluation.py", title="Evaluation", icon=":material/analytics:"),
    st.Page("app_pages/map.py", title="Map", icon=":material/scatter_plot:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("app_pages/index.py", title="Index", icon=":material/storage:", url_path="index-info"),
]


@st.cache_resource(show_spinner=False)
def _warm_up():
    """Once per server process: load the models in a background thread (eproduct_ui.preload)."""
    from eproduct_ui import preload

    return preload.start()


_warm_up()

st.logo("assets/logo.png", size="large")
navigation = st.navigation(PAGES)
navigation.run()
