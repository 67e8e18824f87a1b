"""Sphinx configuration for django-rocket's documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "django-rocket"
copyright = "2026, django-rocket developers"
author = "django-rocket developers"
release = "0.1.0.dev0"

extensions = ["sphinx.ext.intersphinx"]
templates_path = []
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "django-rocket"
html_static_path = ["_static"]
intersphinx_mapping = {}
