"""The dreaming engine: taps read layers, objectives score them, ascent climbs, octaves and tiles scale it."""
