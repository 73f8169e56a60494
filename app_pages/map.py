"""Map page: drawn by eproduct_ui.views.map inside the error boundary."""

from eproduct_ui.guard import page_boundary
from eproduct_ui.views import map

page_boundary(map.render)
