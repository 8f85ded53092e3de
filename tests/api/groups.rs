//! Group CRUD and its rules.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn crud() {
    let app = spawn_app().await;
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/groups",
            json!({"name": "reporting", "audiences": ["svc-b", "reports-*"], "max_lifetime": 900,
                   "cidrs": ["10.0.0.0/8"], "allow_subject": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let g: Value = res.json().await.unwrap();
    assert_eq!(g["audiences"], json!(["svc-b", "reports-*"]));
    assert_eq!(g["max_lifetime"], 900);
    assert_eq!(g["cidrs"], json!(["10.0.0.0/8"]));
    assert_eq!(g["allow_subject"], true);
    assert_eq!(g["reserved"], false);

    let list: Value = app
        .admin_get("/v1/admin/groups")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "auditor", "reporting"]);

    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/groups/reporting",
            json!({"max_lifetime": 60, "cidrs": []}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let g: Value = app
        .admin_get("/v1/admin/groups/reporting")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(g["max_lifetime"], 60);
    assert_eq!(g["cidrs"], json!([]));
    assert_eq!(g["audiences"], json!(["svc-b", "reports-*"]), "untouched");

    let res = app
        .admin(Method::DELETE, "/v1/admin/groups/reporting")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.admin_get("/v1/admin/groups/reporting").await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn duplicate_group_conflicts() {
    let app = spawn_app().await;
    app.create_group("g", &["a"]).await;
    let res = app
        .admin_json(Method::POST, "/v1/admin/groups", json!({"name": "g"}))
        .await;
    assert_problem(res, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn reserved_groups_and_groups_with_members_stay() {
    let app = spawn_app().await;
    let res = app
        .admin(Method::DELETE, "/v1/admin/groups/admin")
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, StatusCode::CONFLICT).await;
    assert!(body["detail"].as_str().unwrap().contains("reserved"));

    app.create_group("g", &["a"]).await;
    app.create_caller(json!({"name": "svc-a", "groups": ["g"]}))
        .await;
    let res = app
        .admin(Method::DELETE, "/v1/admin/groups/g")
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, StatusCode::CONFLICT).await;
    assert!(body["detail"].as_str().unwrap().contains("member"));
}

#[tokio::test]
async fn invalid_grants_name_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"name": "g", "max_lifetime": 3601}), "max_lifetime"),
        (json!({"name": "g", "max_lifetime": 0}), "max_lifetime"),
        (
            json!({"name": "g", "cidrs": ["10.0.0.0/8", "300.1.1.1"]}),
            "cidrs[1]",
        ),
        (
            json!({"name": "g", "audiences": ["ok", "has space"]}),
            "audiences[1]",
        ),
        (json!({"name": "g", "audiences": [""]}), "audiences[0]"),
        (json!({"name": "../g"}), "name"),
        (
            json!({"name": "g", "allow_subject": "yes"}),
            "allow_subject",
        ),
    ];
    for (body, field) in cases {
        let res = app
            .admin_json(Method::POST, "/v1/admin/groups", body.clone())
            .await;
        let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["field"], field, "{body}");
    }
}
