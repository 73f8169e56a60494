"""Compare page: drawn by eproduct_ui.views.compare inside the error boundary."""

from eproduct_ui.guard import page_boundary
from eproduct_ui.views import compare

page_boundary(compare.render)
