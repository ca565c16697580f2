"""A deterministic, AdventureWorks-shaped synthetic database with a real but noisy churn signal.

Why: the pipeline must run end to end on any machine without a copy of the real sample data,
and its tests need a database whose label is learnable (so that tuning, SHAP and promotion do
something meaningful) yet not trivially separable. The tables and columns are those of
AdventureWorks, with value ranges calibrated on the real data (order dates 2011-05-31..2014-06-30
with growth over time, ~10% store customers placing large, frequent orders, 3-4 lines per order),
so the spec's SQL runs unchanged against either.

How the churn signal arises: customers are simulated order by order (vectorised over customers,
one loop step per order rank). After each order, the chance of ordering again within 180 days
follows a logistic model of information known when the order is placed: store vs individual,
number of previous orders, days since the previous order, order value, the share of accessories
and clothing in the order, discounts, territory, e-mail promotion opt-in, the store's sales person
and the month, plus an unobserved customer propensity (the noise). Customers who do not come back
within 180 days may still return later or never.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.data.db import write_tables
from pipeline.data.load_csv import PRIMARY_KEYS

START = pd.Timestamp("2011-05-31")
END = pd.Timestamp("2014-06-30")
GROWTH_FROM = pd.Timestamp("2013-06-01")  # individual sign-ups jump, as in the real data
HORIZON_DAYS = 180
MODIFIED = pd.Timestamp("2014-07-01")  # ModifiedDate of master data: after the last order
MAX_ORDERS_PER_CUSTOMER = 80

# TerritoryID: (Name, CountryRegionCode, Group, individual share, store share, return effect)
TERRITORIES = {
    1: ("Northwest", "US", "North America", 0.15, 0.20, 0.15),
    2: ("Northeast", "US", "North America", 0.01, 0.10, -0.10),
    3: ("Central", "US", "North America", 0.01, 0.10, 0.00),
    4: ("Southwest", "US", "North America", 0.20, 0.20, 0.25),
    5: ("Southeast", "US", "North America", 0.01, 0.10, -0.10),
    6: ("Canada", "CA", "North America", 0.13, 0.15, -0.15),
    7: ("France", "FR", "Europe", 0.085, 0.05, -0.30),
    8: ("Germany", "DE", "Europe", 0.085, 0.04, -0.35),
    9: ("Australia", "AU", "Pacific", 0.22, 0.03, 0.35),
    10: ("United Kingdom", "GB", "Europe", 0.10, 0.03, -0.05),
}
CURRENCY = {"CA": ("CAD", 1.0), "FR": ("EUR", 0.75), "DE": ("EUR", 0.75), "AU": ("AUD", 1.05), "GB": ("GBP", 0.63)}

# ProductCategoryID: (Name, products per subcategory, list price range, subcategory names)
CATEGORIES = {
    1: ("Bikes", 28, (500.0, 3600.0), ["Mountain Bikes", "Road Bikes", "Touring Bikes"]),
    2: (
        "Components",
        8,
        (20.0, 1450.0),
        [
            "Handlebars",
            "Brakes",
            "Chains",
            "Cassettes",
            "Cranks",
            "Derailleurs",
            "Forks",
            "Headsets",
            "Mountain Frames",
            "Road Frames",
            "Pedals",
            "Saddles",
            "Wheels",
            "Seatposts",
        ],
    ),
    3: ("Clothing", 5, (8.0, 90.0), ["Jerseys", "Shorts", "Gloves", "Caps", "Socks", "Jackets", "Tights", "Vests"]),
    4: (
        "Accessories",
        3,
        (2.0, 160.0),
        ["Helmets", "Lights", "Locks", "Pumps", "Bottles", "Racks", "Bags", "Fenders", "Tires", "Tubes", "Tools", "Computers"],
    ),
}
BIKES, COMPONENTS, CLOTHING, ACCESSORIES = 1, 2, 3, 4
STORE_CATEGORY_MIX = [0.35, 0.30, 0.20, 0.15]
RESELLER_PRICE = 0.6  # stores buy at 60% of list price

# SpecialOfferID: (Description, DiscountPct, Type, Category, MinQty, MaxQty)
SPECIAL_OFFERS = {
    1: ("No Discount", 0.00, "No Discount", "No Discount", 0, None),
    2: ("Volume Discount 11 to 14", 0.02, "Volume Discount", "Reseller", 11, 14),
    3: ("Volume Discount 15 to 24", 0.05, "Volume Discount", "Reseller", 15, 24),
    4: ("Volume Discount 25 and over", 0.10, "Volume Discount", "Reseller", 25, None),
    5: ("Seasonal Sale", 0.15, "Seasonal Discount", "Customer", 0, None),
    6: ("Clearance", 0.20, "Excess Inventory", "Customer", 0, None),
}
ONLINE_SHIP, STORE_SHIP = 1, 5
SHIP_METHODS = {
    1: ("Ground Parcel", 3.95, 0.99),
    2: ("Express Parcel", 9.95, 1.99),
    3: ("Overnight", 29.95, 2.99),
    4: ("Air Freight", 21.95, 1.29),
    5: ("Truck Freight", 8.99, 1.49),
}

FIRST_NAMES = [
    "Alex",
    "Maria",
    "Sam",
    "Jordan",
    "Chris",
    "Taylor",
    "Jamie",
    "Robin",
    "Morgan",
    "Casey",
    "Dana",
    "Lee",
    "Kim",
    "Pat",
    "Noah",
    "Emma",
    "Liam",
    "Olivia",
    "Ethan",
    "Mia",
    "Lucas",
    "Ava",
    "Mason",
    "Sofia",
]
LAST_NAMES = [
    "Smith",
    "Garcia",
    "Miller",
    "Chen",
    "Brown",
    "Wilson",
    "Martin",
    "Lopez",
    "Clark",
    "Walker",
    "Young",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Moore",
]
STORE_WORDS = (
    ["Riverside", "Summit", "Valley", "Coastal", "Urban", "Pioneer", "Metro", "Canyon", "Lakeside", "Northern", "Golden", "Trail"],
    ["Cycles", "Bike Shop", "Outfitters", "Sports", "Wheelworks", "Bicycle Supply"],
)
CARD_TYPES = ["NorthStar", "Meridian", "Keystone", "Harbor"]


def generate_tables(customers: int = 1500, seed: int = 7) -> dict[str, pd.DataFrame]:
    """All tables by AdventureWorks name; identical output for identical (customers, seed)."""
    if customers < 1:
        raise ValueError(f"customers must be positive, got {customers}")
    rng = np.random.default_rng(seed)
    catalogue = _catalogue(rng)
    sales_people = _sales_people(rng)
    people = _customers(rng, customers, sales_people)
    orders, lines = _simulate_orders(rng, people, catalogue["Product"], sales_people)
    header, detail, cards, rates = _order_tables(rng, people, orders, lines)
    return {
        "SalesTerritory": _territories(),
        "SalesPerson": sales_people.drop(columns="Effect"),
        "Person": _persons(rng, sales_people, people),
        "Store": _stores(rng, people),
        "Customer": people[["CustomerID", "PersonID", "StoreID", "TerritoryID", "AccountNumber", "ModifiedDate"]],
        "ProductCategory": catalogue["ProductCategory"],
        "ProductSubcategory": catalogue["ProductSubcategory"],
        "Product": catalogue["Product"].drop(columns=["ProductCategoryID", "Popularity"]),
        "SpecialOffer": _special_offers(),
        "ShipMethod": _ship_methods(),
        "CreditCard": cards,
        "CurrencyRate": rates,
        "SalesOrderHeader": header,
        "SalesOrderDetail": detail,
    }


def write_synthetic(url: str, customers: int = 1500, seed: int = 7) -> dict[str, int]:
    """Generate the synthetic database and write it to `url`; returns the row count per table."""
    tables = generate_tables(customers, seed)
    return write_tables(tables, url, keys={name: PRIMARY_KEYS[name] for name in tables})


# --- master data ---------------------------------------------------------------------------------


def _territories() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "TerritoryID": list(TERRITORIES),
            "Name": [t[0] for t in TERRITORIES.values()],
            "CountryRegionCode": [t[1] for t in TERRITORIES.values()],
            "Group": [t[2] for t in TERRITORIES.values()],
            "ModifiedDate": MODIFIED,
        }
    )


def _catalogue(rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """4 categories, 37 subcategories and ~280 products with log-uniform list prices."""
    categories = pd.DataFrame({"ProductCategoryID": list(CATEGORIES), "Name": [c[0] for c in CATEGORIES.values()], "ModifiedDate": START})
    sub_rows = [(cat_id, name) for cat_id, cat in CATEGORIES.items() for name in cat[3]]
    subcategories = pd.DataFrame(sub_rows, columns=["ProductCategoryID", "Name"])
    subcategories.insert(0, "ProductSubcategoryID", np.arange(1, len(subcategories) + 1))
    subcategories["ModifiedDate"] = START

    per_sub = subcategories.ProductCategoryID.map({k: v[1] for k, v in CATEGORIES.items()})
    products = subcategories.loc[subcategories.index.repeat(per_sub)].reset_index(drop=True)
    products = products.rename(columns={"Name": "SubcategoryName"})
    n = len(products)
    low, high = (products.ProductCategoryID.map({k: v[2][i] for k, v in CATEGORIES.items()}) for i in (0, 1))
    # one price level per subcategory, products spread around it
    sub_level = rng.uniform(0.15, 0.85, len(subcategories))[products.ProductSubcategoryID - 1]
    position = np.clip(sub_level + rng.normal(0, 0.2, n), 0, 1)
    list_price = np.exp(np.log(low) + position * (np.log(high) - np.log(low))).round(2)
    category = products.ProductCategoryID.to_numpy()
    is_frame = products.SubcategoryName.str.endswith("Frames").to_numpy()
    sized = (category == BIKES) | is_frame
    rank = products.groupby("ProductSubcategoryID").cumcount().to_numpy()
    line = np.select(
        [
            products.SubcategoryName.str.startswith("Mountain"),
            products.SubcategoryName.str.startswith("Road"),
            category == BIKES,
            category >= CLOTHING,
        ],
        ["M", "R", "T", "S"],
        rng.choice(["M", "R", "T"], n),
    )
    price_tier = products.assign(p=list_price).groupby("ProductSubcategoryID").p.rank(pct=True)
    initials = products.SubcategoryName.str.split().map(lambda words: "".join(w[0] for w in words))

    products = pd.DataFrame(
        {
            "ProductID": np.arange(680, 680 + n),
            "Name": products.SubcategoryName.str.removesuffix("s") + " " + line + "-" + ((rank + 1) * 100).astype(str),
            "ProductNumber": initials + "-" + pd.Series(rng.integers(1000, 9999, n)).astype(str),
            "MakeFlag": sized,
            "FinishedGoodsFlag": True,
            "Color": np.where(sized | (category == CLOTHING), rng.choice(["Black", "Red", "Silver", "Blue", "Yellow", "Multi"], n), None),
            "StandardCost": (list_price * rng.uniform(0.4, 0.65, n)).round(4),
            "ListPrice": list_price,
            "Size": np.where(
                sized,
                rng.choice(["38", "42", "44", "48", "52", "58", "62"], n),
                np.where(category == CLOTHING, rng.choice(["S", "M", "L", "XL"], n), None),
            ),
            "DaysToManufacture": np.where(category == BIKES, 4, np.where(is_frame, 1, 0)),
            "ProductLine": line,
            "Class": np.where(category <= COMPONENTS, np.select([price_tier > 2 / 3, price_tier > 1 / 3], ["H", "M"], "L"), None),
            "Style": np.where(category == CLOTHING, rng.choice(["U", "W", "M"], n), np.where(sized, "U", None)),
            "ProductSubcategoryID": products.ProductSubcategoryID,
            "SellStartDate": START,
            "ModifiedDate": START,
            "ProductCategoryID": category,
            "Popularity": rng.pareto(1.5, n) + 1.0,  # a few best sellers in each category
        }
    )
    return {"ProductCategory": categories, "ProductSubcategory": subcategories, "Product": products}


def _sales_people(rng: np.random.Generator) -> pd.DataFrame:
    """One sales person per territory plus two extra in the busiest US territories."""
    territory = np.array(list(TERRITORIES) + [1, 4])
    n = len(territory)
    return pd.DataFrame(
        {
            "BusinessEntityID": np.arange(1, n + 1),
            "TerritoryID": territory,
            "SalesQuota": rng.choice([250_000.0, 300_000.0], n),
            "Bonus": rng.integers(0, 60, n) * 100.0,
            "CommissionPct": rng.choice([0.01, 0.012, 0.015, 0.019], n),
            "ModifiedDate": START,
            "Effect": rng.normal(0, 0.35, n),  # how well the sales person retains stores
        }
    )


def _customers(rng: np.random.Generator, n: int, sales_people: pd.DataFrame) -> pd.DataFrame:
    """Customers with type, territory, consent, latent propensity and first-order day."""
    store = rng.random(n) < 0.10
    weights = np.array([[t[3], t[4]] for t in TERRITORIES.values()])
    territory = np.where(
        store,
        rng.choice(list(TERRITORIES), n, p=weights[:, 1] / weights[:, 1].sum()),
        rng.choice(list(TERRITORIES), n, p=weights[:, 0] / weights[:, 0].sum()),
    )
    reps = sales_people.sort_values(["TerritoryID", "BusinessEntityID"])
    per_territory = reps.groupby("TerritoryID").size()
    first = (per_territory.cumsum() - per_territory)[territory].to_numpy()
    pick = first + (rng.random(n) * per_territory[territory].to_numpy()).astype(int)
    sales_person = reps.BusinessEntityID.to_numpy()[pick]
    customer_id = pd.Series(np.arange(11000, 11000 + n))
    person_id = len(sales_people) + 1 + np.arange(n)
    store_id = person_id.max() + np.cumsum(store)
    return pd.DataFrame(
        {
            "CustomerID": customer_id,
            "PersonID": person_id,
            "StoreID": pd.Series(store_id, dtype="Int64").where(store),
            "TerritoryID": territory,
            "AccountNumber": "AW" + customer_id.astype(str).str.zfill(8),
            "ModifiedDate": MODIFIED,
            "IsStore": store,
            "SalesPersonID": np.where(store, sales_person, 0),
            "EmailPromotion": rng.choice([0, 1, 2], n, p=[0.55, 0.25, 0.20]),
            "Propensity": rng.normal(0, 1.0, n),
            "FirstDay": _first_order_days(rng, store),
        }
    )


def _first_order_days(rng: np.random.Generator, store: np.ndarray) -> np.ndarray:
    """Stores join evenly over the first two years; individuals join faster from mid-2013."""
    days = np.arange((END - START).days + 1)
    growth = np.where(START + pd.to_timedelta(days, "D") >= GROWTH_FROM, 3.5, 1.0)
    individual = np.searchsorted(np.cumsum(growth), rng.random(len(store)) * growth.sum())
    return np.where(store, rng.integers(0, 2 * 365, len(store)), individual)


def _persons(rng: np.random.Generator, sales_people: pd.DataFrame, people: pd.DataFrame) -> pd.DataFrame:
    ids = np.concatenate([sales_people.BusinessEntityID, people.PersonID])
    kind = np.concatenate([np.full(len(sales_people), "SP"), np.where(people.IsStore, "SC", "IN")])
    promotion = np.concatenate([np.zeros(len(sales_people), int), people.EmailPromotion])
    n = len(ids)
    return pd.DataFrame(
        {
            "BusinessEntityID": ids,
            "PersonType": kind,
            "NameStyle": False,
            "FirstName": rng.choice(FIRST_NAMES, n),
            "LastName": rng.choice(LAST_NAMES, n),
            "EmailPromotion": promotion,
            "ModifiedDate": MODIFIED,
        }
    )


def _stores(rng: np.random.Generator, people: pd.DataFrame) -> pd.DataFrame:
    stores = people[people.IsStore]
    n = len(stores)
    names = (
        pd.Series(rng.choice(STORE_WORDS[0], n)) + " " + rng.choice(STORE_WORDS[1], n) + " #" + pd.Series(np.arange(1, n + 1)).astype(str)
    )
    return pd.DataFrame(
        {
            "BusinessEntityID": stores.StoreID.astype("int64").to_numpy(),
            "Name": names,
            "SalesPersonID": stores.SalesPersonID.to_numpy(),
            "ModifiedDate": MODIFIED,
        }
    )


def _special_offers() -> pd.DataFrame:
    rows = [(k, *v) for k, v in SPECIAL_OFFERS.items()]
    offers = pd.DataFrame(rows, columns=["SpecialOfferID", "Description", "DiscountPct", "Type", "Category", "MinQty", "MaxQty"])
    offers["MaxQty"] = offers.MaxQty.astype("Int64")
    offers["StartDate"], offers["EndDate"], offers["ModifiedDate"] = START, END, START
    return offers


def _ship_methods() -> pd.DataFrame:
    return pd.DataFrame([(k, *v) for k, v in SHIP_METHODS.items()], columns=["ShipMethodID", "Name", "ShipBase", "ShipRate"]).assign(
        ModifiedDate=START
    )


# --- orders --------------------------------------------------------------------------------------


def _simulate_orders(
    rng: np.random.Generator,
    people: pd.DataFrame,
    products: pd.DataFrame,
    sales_people: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Orders (customer row, day) and their lines, one vectorised step per order rank."""
    last_day = (END - START).days
    store = people.IsStore.to_numpy()
    territory_effect = people.TerritoryID.map({k: v[5] for k, v in TERRITORIES.items()}).to_numpy()
    rep_effect = pd.Series(sales_people.Effect.to_numpy(), index=sales_people.BusinessEntityID)
    seller_effect = np.where(store, people.SalesPersonID.map(rep_effect).fillna(0).to_numpy(), 0.0)
    customer_effect = (
        territory_effect + seller_effect + people.Propensity.to_numpy() + np.array([0.0, 0.25, 0.5])[people.EmailPromotion.to_numpy()]
    )

    next_day = people.FirstDay.to_numpy().copy()
    previous_day = np.full(len(people), -1)
    active = np.ones(len(people), bool)
    order_parts, line_parts = [], []
    for rank in range(MAX_ORDERS_PER_CUSTOMER):
        who = np.flatnonzero(active & (next_day <= last_day))
        if who.size == 0:
            break
        day, is_store = next_day[who], store[who]
        lines = _order_lines(rng, who.size, is_store, rank, products)
        since_previous = np.where(previous_day[who] >= 0, day - previous_day[who], 999)
        month = (START + pd.to_timedelta(day, "D")).month.to_numpy()
        logit = customer_effect[who] + _return_logit(lines, is_store, rank, since_previous, month)
        again = rng.random(who.size) < 1 / (1 + np.exp(-logit))
        later = ~again & (rng.random(who.size) < np.where(is_store, 0.5, 0.3))
        gap = np.where(
            again, np.minimum(HORIZON_DAYS, 1 + _gap_within(rng, is_store)), HORIZON_DAYS + 1 + rng.gamma(1.5, 120, who.size).astype(int)
        )

        uid = sum(map(len, order_parts)) + np.arange(who.size)
        order_parts.append(pd.DataFrame({"OrderUID": uid, "Row": who, "Day": day}))
        line_parts.append(lines.assign(OrderUID=uid[lines.Order]).drop(columns="Order"))
        previous_day[who] = day
        next_day[who] = day + gap
        active[who] = again | later
    return pd.concat(order_parts, ignore_index=True), pd.concat(line_parts, ignore_index=True)


def _return_logit(
    lines: pd.DataFrame,
    store: np.ndarray,
    rank: int,
    since_previous: np.ndarray,
    month: np.ndarray,
) -> np.ndarray:
    """Log-odds of ordering again within the horizon, from what is known when the order is placed.

    Loyalty grows with the number of orders; big stores come back, while an individual who just
    bought an expensive bike is less likely to return soon than one buying clothing and accessories.
    """
    per_order = lines.assign(Small=lines.ProductCategoryID.isin([CLOTHING, ACCESSORIES])).groupby("Order")
    value = per_order.LineTotal.sum().to_numpy()
    small_items = per_order.Small.mean().to_numpy()
    discounted = per_order.SpecialOfferID.max().to_numpy() > 1
    by_type = np.where(store, 0.9 + 0.35 * np.log10(value / 5000), -1.9 - 0.3 * np.log10(value / 500) + 0.9 * small_items)
    return by_type + 0.4 * np.log1p(rank) + 0.3 * discounted + 0.35 * (since_previous < 60) + 0.25 * np.isin(month, [11, 12])


def _gap_within(rng: np.random.Generator, store: np.ndarray) -> np.ndarray:
    """Days to the next order for returning customers: stores about quarterly, others sooner."""
    return np.where(store, rng.gamma(4.0, 20.0, store.size), rng.gamma(1.6, 40.0, store.size)).astype(int)


def _order_lines(
    rng: np.random.Generator,
    n_orders: int,
    store: np.ndarray,
    rank: int,
    products: pd.DataFrame,
) -> pd.DataFrame:
    """Lines of one order per customer (`Order` is 0..n_orders-1): stores buy many lines in bulk,
    individuals 1-8 single items, often a bike first."""
    n_lines = np.where(
        store, 1 + np.minimum(rng.negative_binomial(1.2, 1.2 / 9.2, n_orders), 59), np.minimum(1 + rng.poisson(1.1, n_orders), 8)
    )
    order = np.repeat(np.arange(n_orders), n_lines)
    position = np.arange(order.size) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines)
    line_store = store[order]

    first_bike = 0.7 if rank == 0 else 0.35
    p_bike = np.where(position == 0, first_bike, 0.03)
    individual_mix = np.column_stack([p_bike, np.zeros(order.size), 0.4 * (1 - p_bike), 0.6 * (1 - p_bike)])
    mix = np.where(line_store[:, None], np.array(STORE_CATEGORY_MIX), individual_mix)
    category = 1 + (rng.random(order.size)[:, None] > mix.cumsum(axis=1)).sum(axis=1)
    category = np.minimum(category, ACCESSORIES)

    product_index = np.empty(order.size, int)
    for cat in CATEGORIES:
        chosen = category == cat
        pool = np.flatnonzero(products.ProductCategoryID.to_numpy() == cat)
        weight = products.Popularity.to_numpy()[pool]
        product_index[chosen] = rng.choice(pool, chosen.sum(), p=weight / weight.sum())

    quantity = np.where(line_store, rng.geometric(0.3, order.size), 1)
    offer = np.select([quantity >= 25, quantity >= 15, quantity >= 11], [4, 3, 2], 1)
    promo = ~line_store & (category >= CLOTHING) & (rng.random(order.size) < 0.05)
    offer = np.where(promo, rng.choice([5, 6], order.size), offer)
    discount = pd.Series(offer).map({k: v[1] for k, v in SPECIAL_OFFERS.items()}).to_numpy()
    list_price = products.ListPrice.to_numpy()[product_index]
    unit_price = np.where(line_store, (list_price * RESELLER_PRICE).round(4), list_price)
    return pd.DataFrame(
        {
            "Order": order,
            "ProductID": products.ProductID.to_numpy()[product_index],
            "ProductCategoryID": category,
            "SpecialOfferID": offer,
            "OrderQty": quantity,
            "UnitPrice": unit_price,
            "UnitPriceDiscount": discount,
            "LineTotal": (unit_price * (1 - discount) * quantity).round(6),
        }
    )


def _order_tables(
    rng: np.random.Generator,
    people: pd.DataFrame,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """SalesOrderHeader/Detail in date order (as AdventureWorks numbers them), cards and rates."""
    orders = orders.assign(CustomerID=people.CustomerID.to_numpy()[orders.Row])
    orders = orders.sort_values(["Day", "CustomerID"], kind="stable").reset_index(drop=True)
    orders["SalesOrderID"] = 43659 + np.arange(len(orders))
    customer = people.iloc[orders.Row.to_numpy()].reset_index(drop=True)
    store = customer.IsStore.to_numpy()
    order_date = START + pd.to_timedelta(orders.Day, "D")

    detail = lines.assign(SalesOrderID=lines.OrderUID.map(orders.set_index("OrderUID").SalesOrderID))
    detail = detail.sort_values(["SalesOrderID"], kind="stable").reset_index(drop=True)
    detail.insert(1, "SalesOrderDetailID", np.arange(1, len(detail) + 1))
    detail = detail.merge(orders[["SalesOrderID"]].assign(Date=order_date, Store=store), on="SalesOrderID", how="left")
    parts = rng.integers(0, [0xFFFF, 0xFFF, 0xFF], (len(orders), 3))
    tracking = (
        pd.Series(np.char.mod("%04X-", parts[:, 0]), index=orders.SalesOrderID)
        + np.char.mod("%03X-", parts[:, 1])
        + np.char.mod("%02X", parts[:, 2])
    )
    sub_total = detail.groupby("SalesOrderID").LineTotal.sum().reindex(orders.SalesOrderID).to_numpy()

    cards = _credit_cards(rng, people)
    card_id = customer.CustomerID.map(cards.set_index("CustomerID").CreditCardID).astype("Int64")
    currency = customer.TerritoryID.map({k: CURRENCY.get(v[1], (None,))[0] for k, v in TERRITORIES.items()})
    rates = _currency_rates(rng, order_date, currency)
    rate_id = (
        pd.DataFrame({"CurrencyRateDate": order_date, "ToCurrencyCode": currency})
        .merge(rates, how="left", on=["CurrencyRateDate", "ToCurrencyCode"])
        .CurrencyRateID
    )
    approval = rng.integers([100000, 10000], [999999, 99999], (len(orders), 2)).astype(str)
    header = pd.DataFrame(
        {
            "SalesOrderID": orders.SalesOrderID,
            "RevisionNumber": 8,
            "OrderDate": order_date,
            "DueDate": order_date + pd.Timedelta(days=12),
            "ShipDate": order_date + pd.Timedelta(days=7),
            "Status": 5,
            "OnlineOrderFlag": ~store,
            "SalesOrderNumber": "SO" + orders.SalesOrderID.astype(str),
            "PurchaseOrderNumber": np.where(store, np.char.add("PO", rng.integers(10**9, 10**11, len(orders)).astype(str)), None),
            "AccountNumber": pd.Series(np.where(store, "10-4020-", "10-4030-")) + orders.CustomerID.astype(str).str.zfill(6),
            "CustomerID": orders.CustomerID,
            "SalesPersonID": customer.SalesPersonID.astype("Int64").where(store),
            "TerritoryID": customer.TerritoryID,
            "ShipMethodID": np.where(store, STORE_SHIP, ONLINE_SHIP),
            "CreditCardID": card_id,
            "CreditCardApprovalCode": np.where(card_id.notna(), np.char.add(np.char.add(approval[:, 0], "Vi"), approval[:, 1]), None),
            "CurrencyRateID": rate_id.astype("Int64"),
            "SubTotal": sub_total.round(4),
            "TaxAmt": (sub_total * 0.08).round(4),
            "Freight": (sub_total * 0.025).round(4),
        }
    )
    header["TotalDue"] = (header.SubTotal + header.TaxAmt + header.Freight).round(4)
    header["ModifiedDate"] = header.ShipDate
    detail["CarrierTrackingNumber"] = np.where(detail.Store, detail.SalesOrderID.map(tracking), None)
    detail["ModifiedDate"] = detail.Date
    detail = detail[
        [
            "SalesOrderID",
            "SalesOrderDetailID",
            "CarrierTrackingNumber",
            "OrderQty",
            "ProductID",
            "SpecialOfferID",
            "UnitPrice",
            "UnitPriceDiscount",
            "LineTotal",
            "ModifiedDate",
        ]
    ]
    return header, detail, cards.drop(columns="CustomerID"), rates


def _credit_cards(rng: np.random.Generator, people: pd.DataFrame) -> pd.DataFrame:
    """One card per paying customer: nearly all individuals, most stores."""
    has_card = rng.random(len(people)) < np.where(people.IsStore, 0.85, 0.97)
    holders = people.CustomerID[has_card].to_numpy()
    n = holders.size
    return pd.DataFrame(
        {
            "CreditCardID": np.arange(1, n + 1),
            "CardType": rng.choice(CARD_TYPES, n),
            "CardNumber": rng.integers(10**13, 10**14, n).astype(str),
            "ExpMonth": rng.integers(1, 13, n),
            "ExpYear": rng.integers(2012, 2018, n),
            "ModifiedDate": MODIFIED,
            "CustomerID": holders,
        }
    )


def _currency_rates(rng: np.random.Generator, order_date: pd.Series, currency: pd.Series) -> pd.DataFrame:
    """A USD rate per order day and currency of the non-US orders (a gentle wave plus noise)."""
    pairs = pd.DataFrame({"CurrencyRateDate": order_date, "ToCurrencyCode": currency}).dropna()
    pairs = pairs.drop_duplicates().sort_values(["CurrencyRateDate", "ToCurrencyCode"])
    base = pairs.ToCurrencyCode.map({code: level for code, level in CURRENCY.values()}).to_numpy()
    drift = 1 + 0.05 * np.sin((pairs.CurrencyRateDate - START).dt.days.to_numpy() / 180)
    average = (base * drift * rng.normal(1, 0.005, len(pairs))).round(4)
    return pd.DataFrame(
        {
            "CurrencyRateID": np.arange(1, len(pairs) + 1),
            "CurrencyRateDate": pairs.CurrencyRateDate.to_numpy(),
            "FromCurrencyCode": "USD",
            "ToCurrencyCode": pairs.ToCurrencyCode.to_numpy(),
            "AverageRate": average,
            "EndOfDayRate": (average * rng.normal(1, 0.002, len(pairs))).round(4),
            "ModifiedDate": pairs.CurrencyRateDate.to_numpy(),
        }
    )
