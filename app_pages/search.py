"""Search page: drawn by eproduct_ui.views.search inside the error boundary."""

from eproduct_ui.guard import page_boundary
from eproduct_ui.views import search

page_boundary(search.render)
