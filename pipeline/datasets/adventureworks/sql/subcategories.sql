SELECT
    ProductSubcategoryID,
    ProductCategoryID,
    Name AS SubcategoryName
FROM ProductSubcategory
