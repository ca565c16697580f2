-- Customers with their static attributes. Person demographics such as DateFirstPurchase and
-- TotalPurchaseYTD are snapshot values from after the orders (leaks) and are not used.
SELECT
    c.CustomerID,
    CASE WHEN c.StoreID IS NULL THEN 'individual' ELSE 'store' END AS CustomerType,
    c.TerritoryID,
    t.CountryRegionCode,
    p.PersonType,
    p.EmailPromotion
FROM Customer c
LEFT JOIN SalesTerritory t ON t.TerritoryID = c.TerritoryID
LEFT JOIN Person p ON p.BusinessEntityID = c.PersonID
