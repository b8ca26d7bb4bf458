"""The embedded demo world: a closed domain of spoken requests (see DESIGN.md section 3)."""
