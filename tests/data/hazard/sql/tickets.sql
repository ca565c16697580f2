SELECT TicketID, CustomerID, OpenedAt, Severity FROM tickets
