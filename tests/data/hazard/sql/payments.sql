SELECT PaymentID, CustomerID, PaidAt, Amount, Late FROM payments
