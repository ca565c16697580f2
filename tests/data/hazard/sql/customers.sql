SELECT CustomerID, Plan FROM customers
