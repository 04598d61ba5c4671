"""Tests of dsplug.train and the dsplug CLI."""
