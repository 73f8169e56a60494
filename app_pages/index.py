"""Index page: drawn by eproduct_ui.views.index inside the error boundary."""

from eproduct_ui.guard import page_boundary
from eproduct_ui.views import index

page_boundary(index.render)
