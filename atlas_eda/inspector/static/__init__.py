"""The inspector's page (index.html, app.css, app.js), served as they are: a package only so
that setuptools ships its files as package data."""
