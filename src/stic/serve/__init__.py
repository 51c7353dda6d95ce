"""`stic serve`: a local web page to try stic on your own photos.

Drop a photo and see it next to stic's decode and AVIF and JPEG files of the same size; drop a
.stic file to decode it. `work` does the coding (no web code), `app` is the Starlette application
around it, `static/` the page.
"""
