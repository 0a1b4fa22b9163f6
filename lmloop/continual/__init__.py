"""The continual cycle: the landing folder, what is new, the replay mix and the judgement of a challenger."""
