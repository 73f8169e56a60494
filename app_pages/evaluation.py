"""Evaluation page: drawn by eproduct_ui.views.evaluation inside the error boundary."""

from eproduct_ui.guard import page_boundary
from eproduct_ui.views import evaluation

page_boundary(evaluation.render)
