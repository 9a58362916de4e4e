"""``image-composer report``: an HTML page of what is in a build and where it came from.

data.py holds the data model (pure), scan.py reads builds, render.py fills the Jinja2 template
in templates/ with it; static/ holds the inlined CSS and treemap script.
"""
