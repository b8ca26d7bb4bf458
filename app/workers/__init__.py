"""Qt workers: the model worker (a QObject in a long-lived QThread), the microphone bridge and spoken replies.

Everything that is slow or blocks (loading a model, generating, listening, speaking)
runs here, off the Qt main thread; results come back as signals carrying dataclasses.
"""
