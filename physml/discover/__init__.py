"""Discovering physics from data: identifiability of a spec's learned parameters before
training (:mod:`.identifiability`) and intervals on the identified ones after it
(:mod:`.uncertainty`)."""
