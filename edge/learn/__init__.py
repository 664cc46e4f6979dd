"""What the device learns itself, in NumPy: logistic fits (the AudioSet evidence, personal heads).
Imports only NumPy and the core; nothing above it."""
