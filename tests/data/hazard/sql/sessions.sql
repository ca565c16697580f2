SELECT SessionID, CustomerID, StartedAt, Minutes FROM sessions
