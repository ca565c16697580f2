-- Order lines, stamped with their order's date so that aggregations respect cutoff times.
SELECT
    d.SalesOrderDetailID,
    d.SalesOrderID,
    h.OrderDate,
    d.ProductID,
    d.SpecialOfferID,
    d.OrderQty,
    d.UnitPrice,
    d.UnitPriceDiscount,
    d.LineTotal
FROM SalesOrderDetail d
JOIN SalesOrderHeader h ON h.SalesOrderID = d.SalesOrderID
