"""The IVR's call flows, each an `async def` over an AgiSession, testable without a network."""
