"""One module per app page; each has `render()` drawing the page for the current workspace."""
