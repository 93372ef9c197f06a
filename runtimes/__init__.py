"""One adapter per runtime behind one small interface."""
