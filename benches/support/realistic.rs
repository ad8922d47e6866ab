//! Target 4's project: what users run today. A shop schema of 22 tables with indexes and foreign keys in
//! five sqlx migrations, a seed of about 1,000 rows (cargo-pgtest's `fixtures`), and 100 plain
//! `#[sqlx::test]` tests in four files, each running a few queries on data it makes itself.

use std::fmt::Write as _;
use std::io;

use super::context::Context;
use super::generate::{self, Project};

/// `#[sqlx::test]` tests in the project.
pub const TESTS: usize = 100;
/// Test files, and the helper each file's tests call.
const SUITES: [(&str, &str); 4] = [
    ("accounts", "account"),
    ("catalog", "catalog"),
    ("orders", "order"),
    ("engagement", "engagement"),
];

pub fn project(ctx: &Context) -> io::Result<Project> {
    let mut files = vec![
        (
            "Cargo.toml".to_owned(),
            generate::manifest(
                "bench-realistic",
                "cargo-pgtest benchmark, target 4: a shop schema and 100 #[sqlx::test] tests",
                generate::SQLX_TEST_DEPENDENCIES,
                "migrations = \"migrations\"\nfixtures = [\"seed/seed.sql\"]\n",
            ),
        ),
        ("seed/seed.sql".to_owned(), SEED.to_owned()),
        ("tests/common/mod.rs".to_owned(), COMMON.to_owned()),
    ];
    for (name, sql) in MIGRATIONS {
        files.push((format!("migrations/{name}.sql"), sql.to_owned()));
    }
    let per_suite = TESTS / SUITES.len();
    for (index, (file, helper)) in SUITES.iter().enumerate() {
        let mut text = format!("//! Generated: {per_suite} `#[sqlx::test]` tests ({helper}).\n\nmod common;\n\nuse sqlx::PgPool;\n");
        for k in 1..=per_suite {
            let n = index * per_suite + k;
            let _ = write!(
                text,
                "\n#[sqlx::test]\nasync fn {helper}_{n:03}(pool: PgPool) -> sqlx::Result<()> {{\n    \
                 common::{helper}(&pool, {n}).await\n}}\n"
            );
        }
        files.push((format!("tests/{file}.rs"), text));
    }
    generate::write(ctx, "bench-realistic", files)
}

const MIGRATIONS: [(&str, &str); 5] = [
    (
        "20240101000000_accounts",
        r#"CREATE TABLE users (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_created_at ON users (created_at);

CREATE TABLE user_profiles (
    user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    bio text,
    avatar_url text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE addresses (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    line1 text NOT NULL,
    city text NOT NULL,
    country char(2) NOT NULL,
    postal_code text NOT NULL
);
CREATE INDEX addresses_user ON addresses (user_id);

CREATE TABLE sessions (
    token text PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);
"#,
    ),
    (
        "20240102000000_catalog",
        r#"CREATE TABLE categories (
    id serial PRIMARY KEY,
    parent_id integer REFERENCES categories (id),
    name text NOT NULL,
    slug text NOT NULL UNIQUE
);
CREATE INDEX categories_parent ON categories (parent_id);

CREATE TABLE suppliers (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    country char(2) NOT NULL
);

CREATE TABLE products (
    id bigserial PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    price_cents integer NOT NULL CHECK (price_cents >= 0),
    supplier_id integer NOT NULL REFERENCES suppliers (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_supplier ON products (supplier_id);
CREATE INDEX products_name ON products (lower(name));

CREATE TABLE product_categories (
    product_id bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    category_id integer NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, category_id)
);
CREATE INDEX product_categories_category ON product_categories (category_id);

CREATE TABLE tags (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE product_tags (
    product_id bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    tag_id integer NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, tag_id)
);
CREATE INDEX product_tags_tag ON product_tags (tag_id);
"#,
    ),
    (
        "20240103000000_inventory",
        r#"CREATE TABLE warehouses (
    id serial PRIMARY KEY,
    code text NOT NULL UNIQUE,
    city text NOT NULL
);

CREATE TABLE inventory (
    warehouse_id integer NOT NULL REFERENCES warehouses (id),
    product_id bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    quantity integer NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (warehouse_id, product_id)
);
CREATE INDEX inventory_product ON inventory (product_id);
"#,
    ),
    (
        "20240104000000_orders",
        r#"CREATE TABLE coupons (
    code text PRIMARY KEY,
    percent_off integer NOT NULL CHECK (percent_off BETWEEN 1 AND 100),
    valid_until date NOT NULL
);

CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    address_id bigint REFERENCES addresses (id),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    total_cents bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_user ON orders (user_id, created_at DESC);
CREATE INDEX orders_open ON orders (status) WHERE status <> 'shipped';

CREATE TABLE order_items (
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price_cents integer NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX order_items_product ON order_items (product_id);

CREATE TABLE order_coupons (
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    coupon_code text NOT NULL REFERENCES coupons (code),
    PRIMARY KEY (order_id, coupon_code)
);

CREATE TABLE payments (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders (id),
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    method text NOT NULL,
    paid_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_order ON payments (order_id);

CREATE TABLE shipments (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders (id),
    warehouse_id integer NOT NULL REFERENCES warehouses (id),
    tracking text UNIQUE,
    shipped_at timestamptz
);
CREATE INDEX shipments_order ON shipments (order_id);
"#,
    ),
    (
        "20240105000000_engagement",
        r#"CREATE TABLE reviews (
    id bigserial PRIMARY KEY,
    product_id bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    body text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (product_id, user_id)
);
CREATE INDEX reviews_user ON reviews (user_id);

CREATE TABLE carts (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cart_items (
    cart_id bigint NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    product_id bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    quantity integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (cart_id, product_id)
);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    actor_id bigint REFERENCES users (id) ON DELETE SET NULL,
    action text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at);
"#,
    ),
];

/// 1,004 rows.
const SEED: &str = r#"INSERT INTO users (email, name)
    SELECT 'user' || g || '@example.com', 'User ' || g FROM generate_series(1, 150) g;
INSERT INTO user_profiles (user_id, bio) SELECT g, 'Bio of user ' || g FROM generate_series(1, 150) g;
INSERT INTO addresses (user_id, line1, city, country, postal_code)
    SELECT g, g || ' Main Street', 'City ' || g % 20, 'DE', lpad(g::text, 5, '0') FROM generate_series(1, 150) g;
INSERT INTO categories (parent_id, name, slug)
    SELECT NULL, 'Category ' || g, 'category-' || g FROM generate_series(1, 5) g;
INSERT INTO categories (parent_id, name, slug)
    SELECT 1 + g % 5, 'Subcategory ' || g, 'subcategory-' || g FROM generate_series(1, 15) g;
INSERT INTO suppliers (name, country) SELECT 'Supplier ' || g, 'FR' FROM generate_series(1, 10) g;
INSERT INTO products (sku, name, description, price_cents, supplier_id)
    SELECT 'SKU-' || lpad(g::text, 5, '0'), 'Product ' || g, 'A fine product, number ' || g,
           100 + (g * 37) % 9900, 1 + g % 10
    FROM generate_series(1, 200) g;
INSERT INTO product_categories (product_id, category_id) SELECT g, 6 + g % 15 FROM generate_series(1, 200) g;
INSERT INTO tags (name) SELECT 'tag-' || g FROM generate_series(1, 20) g;
INSERT INTO warehouses (code, city) VALUES ('BER', 'Berlin'), ('PAR', 'Paris'), ('MAD', 'Madrid'), ('ROM', 'Rome');
INSERT INTO inventory (warehouse_id, product_id, quantity)
    SELECT 1 + g % 4, g, (g * 13) % 100 FROM generate_series(1, 100) g;
"#;

const COMMON: &str = r##"//! What the tests do: each makes the rows it needs (sqlx::test's database holds the migrations, no seed)
//! and runs a few queries on them.
#![allow(dead_code)]

use sqlx::PgPool;

pub async fn user(pool: &PgPool, n: usize) -> sqlx::Result<i64> {
    sqlx::query_scalar("INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id")
        .bind(format!("user{n}@example.com"))
        .bind(format!("User {n}"))
        .fetch_one(pool)
        .await
}

pub async fn product(pool: &PgPool, n: usize, price_cents: i32) -> sqlx::Result<i64> {
    let supplier: i32 = sqlx::query_scalar(
        "INSERT INTO suppliers (name, country) VALUES ($1, 'DE')
         ON CONFLICT (name) DO UPDATE SET country = excluded.country RETURNING id",
    )
    .bind(format!("Supplier {}", n % 3))
    .fetch_one(pool)
    .await?;
    sqlx::query_scalar("INSERT INTO products (sku, name, price_cents, supplier_id) VALUES ($1, $2, $3, $4) RETURNING id")
        .bind(format!("SKU-{n}-{price_cents}"))
        .bind(format!("Product {n}"))
        .bind(price_cents)
        .bind(supplier)
        .fetch_one(pool)
        .await
}

/// A user with a profile and an address; deleting the user takes them along.
pub async fn account(pool: &PgPool, n: usize) -> sqlx::Result<()> {
    let id = user(pool, n).await?;
    sqlx::query("INSERT INTO user_profiles (user_id, bio) VALUES ($1, $2)")
        .bind(id)
        .bind(format!("Test {n}"))
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO addresses (user_id, line1, city, country, postal_code) VALUES ($1, '1 Road', 'Lyon', 'FR', '69001')")
        .bind(id)
        .execute(pool)
        .await?;
    let (name, city): (String, String) = sqlx::query_as(
        "SELECT u.name, a.city FROM users u JOIN user_profiles p ON p.user_id = u.id
         JOIN addresses a ON a.user_id = u.id WHERE u.email = $1",
    )
    .bind(format!("user{n}@example.com"))
    .fetch_one(pool)
    .await?;
    assert_eq!((name.as_str(), city.as_str()), (format!("User {n}").as_str(), "Lyon"));
    sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(pool).await?;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM addresses").fetch_one(pool).await?;
    assert_eq!(left, 0);
    Ok(())
}

/// A product filed under a subcategory, found through it; a negative price is refused.
pub async fn catalog(pool: &PgPool, n: usize) -> sqlx::Result<()> {
    let parent: i32 = sqlx::query_scalar("INSERT INTO categories (name, slug) VALUES ('Top', 'top') RETURNING id")
        .fetch_one(pool)
        .await?;
    let child: i32 = sqlx::query_scalar("INSERT INTO categories (parent_id, name, slug) VALUES ($1, 'Child', 'child') RETURNING id")
        .bind(parent)
        .fetch_one(pool)
        .await?;
    let product = product(pool, n, 1_000 + n as i32).await?;
    sqlx::query("INSERT INTO product_categories (product_id, category_id) VALUES ($1, $2)")
        .bind(product)
        .bind(child)
        .execute(pool)
        .await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT p.name FROM products p JOIN product_categories pc ON pc.product_id = p.id
         JOIN categories c ON c.id = pc.category_id WHERE c.parent_id = $1 ORDER BY lower(p.name)",
    )
    .bind(parent)
    .fetch_all(pool)
    .await?;
    assert_eq!(names, vec![format!("Product {n}")]);
    let refused = sqlx::query("UPDATE products SET price_cents = -1 WHERE id = $1").bind(product).execute(pool).await;
    assert!(refused.is_err(), "the CHECK constraint holds");
    Ok(())
}

/// An order of three products: its total, a payment, and its status moving on.
pub async fn order(pool: &PgPool, n: usize) -> sqlx::Result<()> {
    let user = user(pool, n).await?;
    let order: i64 = sqlx::query_scalar("INSERT INTO orders (user_id) VALUES ($1) RETURNING id")
        .bind(user)
        .fetch_one(pool)
        .await?;
    for (i, price) in [250, 1_000, 4_999].into_iter().enumerate() {
        let product = product(pool, n, price).await?;
        sqlx::query("INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES ($1, $2, $3, $4)")
            .bind(order)
            .bind(product)
            .bind(i as i32 + 1)
            .bind(price)
            .execute(pool)
            .await?;
    }
    let total: i64 = sqlx::query_scalar(
        "UPDATE orders SET total_cents = (SELECT sum(quantity * unit_price_cents) FROM order_items WHERE order_id = $1)
         WHERE id = $1 RETURNING total_cents",
    )
    .bind(order)
    .fetch_one(pool)
    .await?;
    assert_eq!(total, 250 + 2 * 1_000 + 3 * 4_999);
    sqlx::query("INSERT INTO payments (order_id, amount_cents, method) VALUES ($1, $2, 'card')")
        .bind(order)
        .bind(total)
        .execute(pool)
        .await?;
    sqlx::query("UPDATE orders SET status = 'paid' WHERE id = $1").bind(order).execute(pool).await?;
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status <> 'shipped' AND user_id = $1")
        .bind(user)
        .fetch_one(pool)
        .await?;
    assert_eq!(open, 1);
    Ok(())
}

/// A review (one per user and product), a cart, and an audit entry.
pub async fn engagement(pool: &PgPool, n: usize) -> sqlx::Result<()> {
    let user = user(pool, n).await?;
    let product = product(pool, n, 700).await?;
    let rating = 1 + (n % 5) as i16;
    let review = "INSERT INTO reviews (product_id, user_id, rating) VALUES ($1, $2, $3)";
    sqlx::query(review).bind(product).bind(user).bind(rating).execute(pool).await?;
    let again = sqlx::query(review).bind(product).bind(user).bind(rating).execute(pool).await;
    assert!(again.is_err(), "one review per user and product");
    let cart: i64 = sqlx::query_scalar("INSERT INTO carts (user_id) VALUES ($1) RETURNING id")
        .bind(user)
        .fetch_one(pool)
        .await?;
    for _ in 0..2 {
        sqlx::query(
            "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES ($1, $2, 1)
             ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_items.quantity + 1",
        )
        .bind(cart)
        .bind(product)
        .execute(pool)
        .await?;
    }
    sqlx::query("INSERT INTO audit_log (actor_id, action, payload) VALUES ($1, 'review', $2::jsonb)")
        .bind(user)
        .bind(format!(r#"{{"product": {product}, "rating": {rating}}}"#))
        .execute(pool)
        .await?;
    let (average, in_cart): (f64, i64) = sqlx::query_as(
        "SELECT (SELECT avg(rating)::float8 FROM reviews WHERE product_id = $1),
                (SELECT sum(quantity)::bigint FROM cart_items WHERE cart_id = $2)",
    )
    .bind(product)
    .bind(cart)
    .fetch_one(pool)
    .await?;
    assert_eq!((average, in_cart), (rating as f64, 2));
    Ok(())
}
"##;
