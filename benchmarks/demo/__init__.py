"""``dsplug demo`` over seeds: ``results/demo_seeds.json`` holds the commands it ran and the
test Dice of each mode per seed (no script here: the demo is the command line's).
"""
