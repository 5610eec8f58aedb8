"""The SN29 validator: discover → download → check → evaluate → score → set weights, and survive."""
