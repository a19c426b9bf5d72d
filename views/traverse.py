"""The Traverse page (body in views/traverse_page.py)."""

from views.traverse_page import render

render()
