"""``realfake app``: a web page and a JSON API for checking photos with the registered champion."""
