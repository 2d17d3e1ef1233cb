"""The BentoML detector service (service.py) and the champion store it scores with (champions.py)."""
