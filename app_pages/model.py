"""Model page: drawn by eproduct_ui.views.model inside the error boundary."""

from eproduct_ui.guard import page_boundary
from eproduct_ui.views import model

page_boundary(model.render)
