SELECT
    ProductCategoryID,
    Name AS CategoryName
FROM ProductCategory
