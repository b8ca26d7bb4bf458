"""The desktop app's widgets, one per module. They hold no model or audio logic of their own."""
