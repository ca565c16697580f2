SELECT
    ProductID,
    ProductSubcategoryID,
    Color,
    ProductLine,
    Class,
    Style,
    Size,
    MakeFlag,
    ListPrice,
    StandardCost,
    DaysToManufacture
FROM Product
