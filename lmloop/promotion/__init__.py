"""Who is champion: the challenger gate, the classifier gate, and every move of ``@champion``."""
