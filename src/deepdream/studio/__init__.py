"""The studio: a local web app over the library API (`deepdream studio`, Gradio, optional extra).

service.py (what it does: dream, sweep, atlas jobs), jobs.py (one line per device, progress, previews,
cancel), background.py (video jobs that survive restarts), library.py (the one folder it writes and
serves), safety.py (uploads and hosts), form.py (settings <-> controls), backbones.py (loaded networks),
app.py and the *tab.py modules (the page).
"""
