-- One row per sales order. ShipDate, Status and Comment are left out: ShipDate is only known after
-- the order (a leak at prediction time), Status and Comment are constant in AdventureWorks.
SELECT
    h.SalesOrderID,
    h.CustomerID,
    h.OrderDate,
    h.DueDate,
    h.OnlineOrderFlag,
    h.SalesPersonID,
    h.TerritoryID,
    h.ShipMethodID,
    CASE WHEN h.CreditCardID IS NULL THEN 0 ELSE 1 END AS HasCreditCard,
    CASE WHEN h.CurrencyRateID IS NULL THEN 0 ELSE 1 END AS HasCurrencyRate,
    h.SubTotal,
    h.TaxAmt,
    h.Freight,
    h.TotalDue
FROM SalesOrderHeader h
