//! Log records tagged with app, release and instance: capture, storage, reading, tailing.
