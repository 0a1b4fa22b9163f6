"""The ground floor: configuration, settings and the home, errors a user can fix, progress, atomic files, stop requests."""
