"""The studio: a local web app over the library API (`deepdream studio`, Gradio, optional extra).

service.py (what it does: dream, sweep, atlas, sound and video jobs; the only caller of the library's
jobs), jobs.py (one line per device, progress, previews, cancel, `follow`, a bounded history),
background.py (video job records that survive restarts), library.py (the one folder it writes and
serves), logs.py (its log file), safety.py (uploads, hosts and ports), form.py (settings <-> controls),
backbones.py (loaded networks), app.py and the *tab.py modules (the page), api.py (the endpoints).
"""
