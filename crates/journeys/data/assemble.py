#!/usr/bin/env python3
"""Lays out the journey payloads: one body file per step and each journey's
`manifest.json` (tenant settings and steps).

This tool only writes what providers send: shapes follow the real payloads and
documented samples named in SOURCES.md, with our own ids, amounts and times.
It computes no figure. The expected books of every journey are written by hand
in `<journey>/expect.json`, which this tool never reads or writes.

Run from anywhere: `python3 crates/journeys/data/assemble.py`. The output is
deterministic (same bytes every run).
"""

import json
import os
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
SHOP_DOMAIN = "acme-outfitters.myshopify.com"
WOO_SITE = "https://shop.acme-outfitters.example"
TENANT = "acme"


def money(x):
    return f"{Decimal(x):.2f}"


def mset(shop, shop_cur, pres=None, pres_cur=None):
    return {
        "shop_money": {"amount": money(shop), "currency_code": shop_cur},
        "presentment_money": {
            "amount": money(pres if pres is not None else shop),
            "currency_code": pres_cur or shop_cur,
        },
    }


# ---------------------------------------------------------------------------
# Shopify (REST Admin API webhook bodies, API version 2025-04)
# ---------------------------------------------------------------------------


class Person:
    def __init__(self, cid, first, last, email, phone, city, zip_, province, pcode, country, ccode, street):
        self.cid, self.first, self.last, self.email = cid, first, last, email
        self.phone, self.city, self.zip, self.province = phone, city, zip_, province
        self.pcode, self.country, self.ccode, self.street = pcode, country, ccode, street

    def address(self):
        return {
            "first_name": self.first,
            "address1": self.street,
            "phone": self.phone,
            "city": self.city,
            "zip": self.zip,
            "province": self.province,
            "country": self.country,
            "last_name": self.last,
            "address2": "",
            "company": None,
            "latitude": None,
            "longitude": None,
            "name": f"{self.first} {self.last}",
            "country_code": self.ccode,
            "province_code": self.pcode,
        }

    def shopify_customer(self, created, updated):
        return {
            "id": self.cid,
            "email": self.email,
            "created_at": created,
            "updated_at": updated,
            "first_name": self.first,
            "last_name": self.last,
            "state": "enabled",
            "note": None,
            "verified_email": True,
            "multipass_identifier": None,
            "tax_exempt": False,
            "phone": None,
            "email_marketing_consent": {
                "state": "subscribed",
                "opt_in_level": "single_opt_in",
                "consent_updated_at": created,
            },
            "sms_marketing_consent": None,
            "tags": "",
            "currency": "USD",
            "tax_exemptions": [],
            "admin_graphql_api_id": f"gid://shopify/Customer/{self.cid}",
            "default_address": dict(
                self.address(), id=self.cid + 1000, customer_id=self.cid, default=True,
                country_name=self.country,
            ),
        }


class Line:
    def __init__(self, lid, title, sku, qty, price, shop_price=None, variant=None, product=None):
        self.id, self.title, self.sku, self.qty = lid, title, sku, qty
        self.price = Decimal(price)
        self.shop_price = Decimal(shop_price) if shop_price is not None else self.price
        self.variant = variant or lid + 300000
        self.product = product or lid + 600000

    def body(self, shop_cur, pres_cur, current_qty=None):
        return {
            "id": self.id,
            "admin_graphql_api_id": f"gid://shopify/LineItem/{self.id}",
            "current_quantity": self.qty if current_qty is None else current_qty,
            "fulfillable_quantity": self.qty if current_qty is None else current_qty,
            "fulfillment_service": "manual",
            "fulfillment_status": None,
            "gift_card": False,
            "grams": 300,
            "name": self.title,
            "price": money(self.shop_price),
            "price_set": mset(self.shop_price, shop_cur, self.price, pres_cur),
            "product_exists": True,
            "product_id": self.product,
            "properties": [],
            "quantity": self.qty,
            "requires_shipping": True,
            "sku": self.sku,
            "taxable": True,
            "title": self.title,
            "total_discount": "0.00",
            "total_discount_set": mset(0, shop_cur, 0, pres_cur),
            "variant_id": self.variant,
            "variant_inventory_management": "shopify",
            "variant_title": None,
            "vendor": "Acme Outfitters",
            "tax_lines": [],
            "duties": [],
            "discount_allocations": [],
        }


def shopify_refund(
    rid, order_id, created, note, lines, transactions, shop_cur, pres_cur, rate=Decimal(1),
    adjustments=(), restock_type="return",
):
    """A refund as refunds/create sends it and as `order.refunds[]` lists it.

    `lines`: [(refund line id, Line, qty)], `transactions`: [(id, parent id, amount
    in the presentment currency, gateway)], `adjustments`: [(id, kind, amount in
    the presentment currency; negative for money back)].
    """
    rli = []
    for rl_id, line, qty in lines:
        sub_p = line.price * qty
        sub_s = line.shop_price * qty
        rli.append(
            {
                "id": rl_id,
                "line_item_id": line.id,
                "location_id": 71024443,
                "quantity": qty,
                "restock_type": restock_type,
                "subtotal": float(sub_s),
                "subtotal_set": mset(sub_s, shop_cur, sub_p, pres_cur),
                "total_tax": 0.0,
                "total_tax_set": mset(0, shop_cur, 0, pres_cur),
                "line_item": line.body(shop_cur, pres_cur),
            }
        )
    txs = []
    for tid, parent, amount, gateway in transactions:
        txs.append(
            {
                "id": tid,
                "admin_graphql_api_id": f"gid://shopify/OrderTransaction/{tid}",
                "amount": money(amount),
                "authorization": None,
                "created_at": created,
                "currency": pres_cur,
                "device_id": None,
                "error_code": None,
                "gateway": gateway,
                "kind": "refund",
                "location_id": None,
                "message": "Refunded",
                "order_id": order_id,
                "parent_id": parent,
                "payment_id": f"#{order_id}.{tid}",
                "processed_at": created,
                "receipt": {},
                "source_name": "web",
                "status": "success",
                "test": False,
                "user_id": 84210001,
            }
        )
    adj = []
    for aid, kind, amount in adjustments:
        a = Decimal(amount)
        adj.append(
            {
                "id": aid,
                "amount": money(a / rate),
                "amount_set": mset(a / rate, shop_cur, a, pres_cur),
                "kind": kind,
                "order_id": order_id,
                "reason": "Refund discrepancy" if kind == "refund_discrepancy" else "Shipping refund",
                "refund_id": rid,
                "tax_amount": "0.00",
                "tax_amount_set": mset(0, shop_cur, 0, pres_cur),
            }
        )
    return {
        "id": rid,
        "admin_graphql_api_id": f"gid://shopify/Refund/{rid}",
        "created_at": created,
        "note": note,
        "order_id": order_id,
        "processed_at": created,
        "restock": restock_type in ("return", "cancel"),
        "total_duties_set": mset(0, shop_cur, 0, pres_cur),
        "user_id": 84210001,
        "order_adjustments": adj,
        "transactions": txs,
        "refund_line_items": rli,
        "duties": [],
    }


def shopify_order(
    *, oid, number, person, created, updated, lines, shipping, financial_status,
    shop_cur="USD", pres_cur=None, rate=Decimal(1), current_total=None, current_subtotal=None,
    outstanding="0.00", refunds=(), fulfillments=(), cancelled_at=None, cancel_reason=None,
    gateways=("shopify_payments",), current_qty=None, test=False, total_override=None,
):
    """An order as orders/* webhooks send it. Amounts are given in the
    presentment currency; `rate` converts them to the shop currency
    (shop = presentment / rate)."""
    pres_cur = pres_cur or shop_cur
    shipping = Decimal(shipping)
    subtotal_p = sum((l.price * l.qty for l in lines), Decimal(0))
    total_p = Decimal(total_override) if total_override is not None else subtotal_p + shipping
    if total_override is not None:
        # An edited order keeps what it was placed with in the original fields.
        subtotal_p = total_p - shipping
    cur_total_p = Decimal(current_total) if current_total is not None else total_p
    cur_sub_p = Decimal(current_subtotal) if current_subtotal is not None else cur_total_p - shipping

    def s(x):
        return (Decimal(x) / rate).quantize(Decimal("0.01"))

    cq = current_qty or {}
    return {
        "id": oid,
        "admin_graphql_api_id": f"gid://shopify/Order/{oid}",
        "app_id": 580111,
        "browser_ip": "203.0.113.24",
        "buyer_accepts_marketing": True,
        "cancel_reason": cancel_reason,
        "cancelled_at": cancelled_at,
        "cart_token": f"Z2NwLXVzLWVhc3QxOjAxSj{oid}",
        "checkout_id": oid + 1000000,
        "checkout_token": f"c1f2{oid}e5",
        "client_details": {
            "accept_language": "en-US",
            "browser_height": None,
            "browser_ip": "203.0.113.24",
            "browser_width": None,
            "session_hash": None,
            "user_agent": "Mozilla/5.0",
        },
        "closed_at": None,
        "confirmation_number": f"K{oid % 100000:05d}QX",
        "confirmed": True,
        "contact_email": person.email,
        "created_at": created,
        "currency": shop_cur,
        "current_subtotal_price": money(s(cur_sub_p)),
        "current_subtotal_price_set": mset(s(cur_sub_p), shop_cur, cur_sub_p, pres_cur),
        "current_total_additional_fees_set": None,
        "current_total_discounts": "0.00",
        "current_total_discounts_set": mset(0, shop_cur, 0, pres_cur),
        "current_total_duties_set": None,
        "current_total_price": money(s(cur_total_p)),
        "current_total_price_set": mset(s(cur_total_p), shop_cur, cur_total_p, pres_cur),
        "current_total_tax": "0.00",
        "current_total_tax_set": mset(0, shop_cur, 0, pres_cur),
        "customer_locale": "en-US",
        "discount_codes": [],
        "email": person.email,
        "estimated_taxes": False,
        "financial_status": financial_status,
        "fulfillment_status": None,
        "landing_site": "/products/spring?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
        "landing_site_ref": None,
        "location_id": None,
        "merchant_of_record_app_id": None,
        "name": f"#{number}",
        "note": None,
        "note_attributes": [],
        "number": number - 1000,
        "order_number": number,
        "order_status_url": f"https://{SHOP_DOMAIN}/7700/orders/{oid}/authenticate",
        "original_total_additional_fees_set": None,
        "original_total_duties_set": None,
        "payment_gateway_names": list(gateways),
        "phone": None,
        "po_number": None,
        "presentment_currency": pres_cur,
        "processed_at": created,
        "reference": None,
        "referring_site": "https://newsletter.acme-outfitters.example/",
        "source_identifier": None,
        "source_name": "web",
        "source_url": None,
        "subtotal_price": money(s(subtotal_p)),
        "subtotal_price_set": mset(s(subtotal_p), shop_cur, subtotal_p, pres_cur),
        "tags": "",
        "tax_exempt": False,
        "tax_lines": [],
        "taxes_included": False,
        "test": test,
        "token": f"b1946ac9{oid}",
        "total_discounts": "0.00",
        "total_discounts_set": mset(0, shop_cur, 0, pres_cur),
        "total_line_items_price": money(s(subtotal_p)),
        "total_line_items_price_set": mset(s(subtotal_p), shop_cur, subtotal_p, pres_cur),
        "total_outstanding": money(outstanding),
        "total_price": money(s(total_p)),
        "total_price_set": mset(s(total_p), shop_cur, total_p, pres_cur),
        "total_shipping_price_set": mset(s(shipping), shop_cur, shipping, pres_cur),
        "total_tax": "0.00",
        "total_tax_set": mset(0, shop_cur, 0, pres_cur),
        "total_tip_received": "0.00",
        "total_weight": 300 * sum(l.qty for l in lines),
        "updated_at": updated,
        "user_id": None,
        "billing_address": person.address(),
        "customer": person.shopify_customer("2025-01-15T09:12:00-05:00", updated),
        "discount_applications": [],
        "fulfillments": list(fulfillments),
        "line_items": [l.body(shop_cur, pres_cur, cq.get(l.id)) for l in lines],
        "payment_terms": None,
        "refunds": list(refunds),
        "shipping_address": person.address(),
        "shipping_lines": [
            {
                "id": oid + 7,
                "carrier_identifier": None,
                "code": "Standard",
                "discounted_price": money(s(shipping)),
                "discounted_price_set": mset(s(shipping), shop_cur, shipping, pres_cur),
                "is_removed": False,
                "phone": None,
                "price": money(s(shipping)),
                "price_set": mset(s(shipping), shop_cur, shipping, pres_cur),
                "requested_fulfillment_service_id": None,
                "source": "shopify",
                "title": "Standard",
                "tax_lines": [],
                "discount_allocations": [],
            }
        ]
        if shipping > 0
        else [],
    }


def shopify_fulfillment(fid, order_id, name, created, tracking, lines):
    return {
        "id": fid,
        "admin_graphql_api_id": f"gid://shopify/Fulfillment/{fid}",
        "created_at": created,
        "location_id": 71024443,
        "name": f"{name}.1",
        "order_id": order_id,
        "origin_address": {},
        "receipt": {},
        "service": "manual",
        "shipment_status": None,
        "status": "success",
        "tracking_company": "UPS",
        "tracking_number": tracking,
        "tracking_numbers": [tracking],
        "tracking_url": f"https://www.ups.com/WebTracking?loc=en_US&requester=ST&trackNums={tracking}",
        "tracking_urls": [f"https://www.ups.com/WebTracking?loc=en_US&requester=ST&trackNums={tracking}"],
        "updated_at": created,
        "line_items": [l.body("USD", "USD") for l in lines],
    }


def shopify_step(topic, event_uuid, triggered_at, body, received_at, note):
    return {
        "provider": "shopify",
        "topic": topic,
        "event_id": f"{event_uuid}:{topic}",
        "headers": {
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": SHOP_DOMAIN,
            "X-Shopify-API-Version": "2025-04",
            "X-Shopify-Event-Id": event_uuid,
            "X-Shopify-Webhook-Id": "b" + event_uuid[1:],
            "X-Shopify-Triggered-At": triggered_at,
        },
        "body": body,
        "received_at": received_at,
        "note": note,
    }


# ---------------------------------------------------------------------------
# WooCommerce (wc/v3 order resource, the body of order.* webhooks)
# ---------------------------------------------------------------------------


def woo_order(
    *, oid, status, person, cur, created_gmt, modified_gmt, lines, shipping, payment_method,
    payment_title, transaction_id="", paid_gmt=None, refunds=(), customer_id=0, meta=(),
):
    subtotal = sum((Decimal(p) * q for (_, _, _, q, p) in lines), Decimal(0))
    total = subtotal + Decimal(shipping)
    items = []
    for lid, name, sku, qty, price in lines:
        items.append(
            {
                "id": lid,
                "name": name,
                "product_id": lid + 9000,
                "variation_id": 0,
                "quantity": qty,
                "tax_class": "",
                "subtotal": money(Decimal(price) * qty),
                "subtotal_tax": "0.00",
                "total": money(Decimal(price) * qty),
                "total_tax": "0.00",
                "taxes": [],
                "meta_data": [],
                "sku": sku,
                "price": float(Decimal(price)),
                "image": {"id": "", "src": ""},
                "parent_name": None,
            }
        )

    def local(gmt):
        # The shop runs on UTC-3 like the documented sample.
        from datetime import datetime, timedelta

        return (datetime.fromisoformat(gmt) - timedelta(hours=3)).isoformat()

    return {
        "id": oid,
        "parent_id": 0,
        "status": status,
        "currency": cur,
        "version": "9.8.5",
        "prices_include_tax": False,
        "date_created": local(created_gmt),
        "date_modified": local(modified_gmt),
        "discount_total": "0.00",
        "discount_tax": "0.00",
        "shipping_total": money(shipping),
        "shipping_tax": "0.00",
        "cart_tax": "0.00",
        "total": money(total),
        "total_tax": "0.00",
        "customer_id": customer_id,
        "order_key": f"wc_order_{oid}kQ3v",
        "billing": {
            "first_name": person.first,
            "last_name": person.last,
            "company": "",
            "address_1": person.street,
            "address_2": "",
            "city": person.city,
            "state": person.pcode,
            "postcode": person.zip,
            "country": person.ccode,
            "email": person.email,
            "phone": person.phone,
        },
        "shipping": {
            "first_name": person.first,
            "last_name": person.last,
            "company": "",
            "address_1": person.street,
            "address_2": "",
            "city": person.city,
            "state": person.pcode,
            "postcode": person.zip,
            "country": person.ccode,
            "phone": "",
        },
        "payment_method": payment_method,
        "payment_method_title": payment_title,
        "transaction_id": transaction_id,
        "customer_ip_address": "198.51.100.7",
        "customer_user_agent": "Mozilla/5.0",
        "created_via": "checkout",
        "customer_note": "",
        "date_completed": None,
        "date_paid": local(paid_gmt) if paid_gmt else None,
        "cart_hash": f"5b0c{oid}",
        "number": str(oid),
        "meta_data": list(meta),
        "line_items": items,
        "tax_lines": [],
        "shipping_lines": [
            {
                "id": oid + 1,
                "method_title": "Flat rate",
                "method_id": "flat_rate",
                "instance_id": "1",
                "total": money(shipping),
                "total_tax": "0.00",
                "taxes": [],
                "meta_data": [],
            }
        ],
        "fee_lines": [],
        "coupon_lines": [],
        "refunds": [{"id": r, "reason": why, "total": money(-Decimal(amt))} for (r, why, amt) in refunds],
        "payment_url": f"{WOO_SITE}/checkout/order-pay/{oid}/?pay_for_order=true&key=wc_order_{oid}kQ3v",
        "is_editable": status in ("pending", "on-hold"),
        "needs_payment": status == "pending",
        "needs_processing": True,
        "date_created_gmt": created_gmt,
        "date_modified_gmt": modified_gmt,
        "date_completed_gmt": None,
        "date_paid_gmt": paid_gmt,
        "currency_symbol": "$" if cur == "USD" else "\u20ac",
        "_links": {
            "self": [{"href": f"{WOO_SITE}/wp-json/wc/v3/orders/{oid}"}],
            "collection": [{"href": f"{WOO_SITE}/wp-json/wc/v3/orders"}],
        },
    }


def woo_step(topic, body, delivery_id, received_at, note):
    resource, event = topic.split(".")
    return {
        "provider": "woocommerce",
        "topic": topic,
        "event_id": f"{resource}:{body['id']}:{body['date_modified_gmt']}",
        "headers": {
            "X-WC-Webhook-Source": WOO_SITE + "/",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-ID": "14",
            "X-WC-Webhook-Delivery-ID": delivery_id,
            "User-Agent": "WooCommerce/9.8.5 Hookshot (WordPress/6.8.1)",
        },
        "body": body,
        "received_at": received_at,
        "note": note,
    }


# ---------------------------------------------------------------------------
# Stripe (events of API version 2025-03-31.basil: expandable fields are ids)
# ---------------------------------------------------------------------------

from datetime import datetime, timezone


def unix(ts):
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


def stripe_event(eid, etype, created, obj, previous=None, request=None):
    ev = {
        "id": eid,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": unix(created),
        "data": {"object": obj},
        "livemode": True,
        "pending_webhooks": 1,
        "request": {"id": request, "idempotency_key": None if request is None else f"ik-{request}"},
        "type": etype,
    }
    if previous is not None:
        ev["data"]["previous_attributes"] = previous
    return ev


def stripe_charge(*, ch, pi, amount, cur, created, person, metadata, amount_refunded=0,
                  refunded=False, disputed=False, txn=None, captured=True, amount_captured=None):
    return {
        "id": ch,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if amount_captured is None else amount_captured,
        "amount_refunded": amount_refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": txn,
        "billing_details": {
            "address": {
                "city": person.city, "country": person.ccode, "line1": person.street,
                "line2": None, "postal_code": person.zip, "state": person.pcode,
            },
            "email": person.email,
            "name": f"{person.first} {person.last}",
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "ACME OUTFITTERS",
        "captured": captured,
        "created": unix(created),
        "currency": cur,
        "customer": None,
        "description": f"Acme Outfitters - Order {metadata.get('order_id', '')}",
        "disputed": disputed,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": True,
        "metadata": metadata,
        "on_behalf_of": None,
        "outcome": {
            "advice_code": None, "network_advice_code": None, "network_decline_code": None,
            "network_status": "approved_by_network", "reason": None, "risk_level": "normal",
            "seller_message": "Payment complete.", "type": "authorized",
        },
        "paid": True,
        "payment_intent": pi,
        "payment_method": "pm_1QxA7kLkdIwHu7ixCard" + ch[-4:],
        "payment_method_details": {
            "card": {
                "amount_authorized": amount, "brand": "visa",
                "checks": {"address_line1_check": "pass", "address_postal_code_check": "pass", "cvc_check": "pass"},
                "country": "US", "exp_month": 8, "exp_year": 2029, "funding": "credit",
                "last4": "4242", "network": "visa", "three_d_secure": None, "wallet": None,
            },
            "type": "card",
        },
        "receipt_email": person.email,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/{ch}",
        "refunded": refunded,
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


def stripe_intent(*, pi, ch, amount, cur, created, metadata, received=None, person=None):
    return {
        "id": pi,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount if received is None else received,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{pi}_secret_QxA7",
        "confirmation_method": "automatic",
        "created": unix(created),
        "currency": cur,
        "customer": None,
        "description": f"Acme Outfitters - Order {metadata.get('order_id', '')}",
        "last_payment_error": None,
        "latest_charge": ch,
        "livemode": True,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": "pm_1QxA7kLkdIwHu7ixCard" + ch[-4:],
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": person.email if person else None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


def stripe_refund(*, re, ch, pi, amount, cur, created, status, reason=None, failure_reason=None, txn=None):
    r = {
        "id": re,
        "object": "refund",
        "amount": amount,
        "balance_transaction": txn,
        "charge": ch,
        "created": unix(created),
        "currency": cur,
        "destination_details": {"card": {"reference_status": "pending", "reference_type": "acquirer_reference_number", "type": "refund"}, "type": "card"},
        "metadata": {},
        "payment_intent": pi,
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }
    if failure_reason:
        r["failure_reason"] = failure_reason
        r["failure_balance_transaction"] = "txn_" + re[3:-4] + "FAIL"
    return r


def stripe_dispute(*, dp, ch, pi, amount, cur, created, status, reason, case_type, bts=()):
    return {
        "id": dp,
        "object": "dispute",
        "amount": amount,
        "balance_transactions": list(bts),
        "charge": ch,
        "created": unix(created),
        "currency": cur,
        "enhanced_eligibility_types": [],
        "evidence": {"customer_email_address": None, "uncategorized_text": None},
        "evidence_details": {
            "due_by": unix(created) + 14 * 86400, "enhanced_eligibility": {},
            "has_evidence": False, "past_due": False, "submission_count": 0,
        },
        "is_charge_refundable": case_type == "inquiry",
        "livemode": True,
        "metadata": {},
        "network_reason_code": "13.1" if reason == "product_not_received" else "10.4",
        "payment_intent": pi,
        "payment_method_details": {"card": {"brand": "visa", "case_type": case_type, "network_reason_code": "13.1"}, "type": "card"},
        "reason": reason,
        "status": status,
    }


def stripe_dispute_txn(txn, dp, amount, fee, cur, created, kind):
    return {
        "id": txn,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": unix(created) + 2 * 86400,
        "created": unix(created),
        "currency": cur,
        "description": f"Chargeback withdrawal for {dp}" if kind == "adjustment" and amount < 0 else f"Chargeback reversal for {dp}",
        "exchange_rate": None,
        "fee": fee,
        "fee_details": [{"amount": fee, "application": None, "currency": cur, "description": "Dispute fee", "type": "stripe_fee"}] if fee else [],
        "net": amount - fee,
        "reporting_category": "dispute" if amount < 0 else "dispute_reversal",
        "source": dp,
        "status": "available",
        "type": kind,
    }


def stripe_step(ev, received_at, note):
    return {
        "provider": "stripe",
        "topic": ev["type"],
        "event_id": ev["id"],
        "headers": {"User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
        "body": ev,
        "received_at": received_at,
        "note": note,
    }


# ---------------------------------------------------------------------------
# Adyen (standard webhook: one NotificationRequestItem per notification)
# ---------------------------------------------------------------------------


def adyen_item(*, code, psp, original, merchant_ref, amount, cur, date, success=True, reason="", extra=None, method="visa"):
    item = {
        "additionalData": dict(extra or {}),
        "amount": {"currency": cur, "value": amount},
        "eventCode": code,
        "eventDate": date,
        "merchantAccountCode": "AcmeOutfittersEU",
        "merchantReference": merchant_ref,
        "paymentMethod": method,
        "pspReference": psp,
        "reason": reason,
        "success": "true" if success else "false",
    }
    if original:
        item["originalReference"] = original
    if code == "AUTHORISATION":
        item["operations"] = ["CANCEL", "CAPTURE", "REFUND"]
    return item


def adyen_step(item, received_at, note):
    return {
        "provider": "adyen",
        "topic": item["eventCode"],
        "event_id": f"adyen:{item['pspReference']}:{item['eventCode']}:{item['success']}",
        "headers": {"User-Agent": "Adyen HttpClient 1.0"},
        "body": {"live": "true", "notificationItems": [{"NotificationRequestItem": item}]},
        "received_at": received_at,
        "note": note,
    }


# ---------------------------------------------------------------------------
# PayPal (REST webhooks, resource_version 2.0 for payments, 1.0 for disputes)
# ---------------------------------------------------------------------------

PAYPAL_API = "https://api.paypal.com"


def paypal_event(eid, etype, created, resource_type, resource, summary, version="2.0"):
    return {
        "id": eid,
        "event_version": "1.0",
        "create_time": created,
        "resource_type": resource_type,
        "resource_version": version,
        "event_type": etype,
        "summary": summary,
        "resource": resource,
        "links": [
            {"href": f"{PAYPAL_API}/v1/notifications/webhooks-events/{eid}", "rel": "self", "method": "GET"},
            {"href": f"{PAYPAL_API}/v1/notifications/webhooks-events/{eid}/resend", "rel": "resend", "method": "POST"},
        ],
    }


def paypal_step(ev, received_at, note):
    return {
        "provider": "paypal",
        "topic": ev["event_type"],
        "event_id": ev["id"],
        "headers": {"User-Agent": "PayPal/AUHD-214.0-58843383"},
        "body": ev,
        "received_at": received_at,
        "note": note,
    }


# ---------------------------------------------------------------------------
# AfterShip (tracking_update webhooks, API 2024-04) and Gorgias (HTTP integration)
# ---------------------------------------------------------------------------


def aftership_checkpoint(at, tag, subtag, message, city, state):
    return {
        "slug": "ups",
        "city": city,
        "created_at": at,
        "location": f"{city}, {state}, US",
        "country_name": "United States",
        "message": message,
        "country_iso3": "USA",
        "tag": tag,
        "subtag": subtag,
        "subtag_message": message,
        "checkpoint_time": at,
        "coordinates": [],
        "state": state,
        "zip": None,
        "raw_tag": None,
        "events": [],
        "source": "carrier",
    }


def aftership_step(event_id, ts, tracking, tag, subtag, checkpoints, received_at, note, expected="2025-06-04"):
    body = {
        "event_id": event_id,
        "event": "tracking_update",
        "is_tracking_first_tag": True,
        "msg": {
            "id": "ufmt0dh3pb6gwl6g3a7jq3kq",
            "tracking_number": tracking,
            "title": tracking,
            "note": None,
            "origin_country_iso3": "USA",
            "destination_country_iso3": "USA",
            "slug": "ups",
            "active": tag != "Delivered",
            "tag": tag,
            "subtag": subtag,
            "subtag_message": checkpoints[-1]["subtag_message"],
            "shipment_type": "UPS Ground",
            "expected_delivery": expected,
            "order_id": None,
            "order_number": None,
            "order_date": None,
            "order_id_path": None,
            "checkpoints": checkpoints,
            "created_at": "2025-06-02T13:05:00+00:00",
            "updated_at": checkpoints[-1]["checkpoint_time"],
            "return_to_sender": False,
            "signed_by": "K MUELLER" if tag == "Delivered" else None,
            "source": "api",
        },
        "ts": unix(ts),
    }
    return {
        "provider": "aftership",
        "topic": "tracking_update",
        "event_id": event_id,
        "headers": {"User-Agent": "AfterShip Webhook"},
        "body": body,
        "received_at": received_at,
        "note": note,
    }


def gorgias_step(event, ticket, received_at, note):
    return {
        "provider": "gorgias",
        "topic": event,
        "event_id": f"gorgias:{ticket['id']}:{ticket['updated_datetime']}",
        "headers": {"User-Agent": "Gorgias-HTTP-Integration"},
        "body": {"event": event, "ticket": ticket},
        "received_at": received_at,
        "note": note,
    }


# ---------------------------------------------------------------------------
# Inventory: the ERP feed (JSON lines) and Shopify inventory items
# ---------------------------------------------------------------------------


def erp_step(lines, received_at, note):
    """An ERP feed body: one JSON object per line, as storefold's erp
    provider reads it. Its id is the ingest's: erp:<sha256 of the body>."""
    import hashlib

    body = "".join(json.dumps(l, separators=(",", ":")) + "\n" for l in lines)
    return {
        "provider": "erp",
        "topic": "inventory",
        "event_id": "erp:" + hashlib.sha256(body.encode("utf-8")).hexdigest(),
        "headers": {},
        "body": body,
        "received_at": received_at,
        "note": note,
    }


def shopify_inventory_item(item_id, sku, cost, created, updated):
    """An inventory item as inventory_items/* webhooks send it (the REST
    InventoryItem resource)."""
    return {
        "id": item_id,
        "sku": sku,
        "created_at": created,
        "updated_at": updated,
        "requires_shipping": True,
        "cost": cost,
        "country_code_of_origin": None,
        "province_code_of_origin": None,
        "harmonized_system_code": None,
        "tracked": True,
        "country_harmonized_system_codes": [],
        "admin_graphql_api_id": f"gid://shopify/InventoryItem/{item_id}",
    }


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def write_journey(name, title, tenant, steps):
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    manifest_steps = []
    for i, st in enumerate(steps, 1):
        label = st["topic"].replace("/", "_").replace(".", "_").lower()
        if isinstance(st["body"], str):
            # A body that is not one JSON document (the ERP feed's JSON
            # lines): kept byte for byte, as its id was computed from it.
            fname = f"{i:02d}_{st['provider']}_{label}.jsonl"
            with open(os.path.join(d, fname), "w", encoding="utf-8", newline="") as f:
                f.write(st["body"])
        else:
            fname = f"{i:02d}_{st['provider']}_{label}.json"
            with open(os.path.join(d, fname), "w", encoding="utf-8") as f:
                f.write(json.dumps(st["body"], indent=2, ensure_ascii=False))
                f.write("\n")
        manifest_steps.append(
            {
                "provider": st["provider"],
                "topic": st["topic"],
                "event_id": st["event_id"],
                "headers": st["headers"],
                "body": fname,
                "received_at": st["received_at"],
                "note": st["note"],
            }
        )
    manifest = {"title": title, "tenant": dict({"id": TENANT}, **tenant), "steps": manifest_steps}
    with open(os.path.join(d, "manifest.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=2, ensure_ascii=False))
        f.write("\n")


SHOPIFY_ONLY = {"stores": ["shopify"]}
SHOPIFY_COSTED = {"stores": ["shopify"], "cost_currency": "USD"}
WOO_STRIPE = {"stores": ["woocommerce"], "stripe": {"fields": ["order_id"]}}


# ---------------------------------------------------------------------------
# The journeys
# ---------------------------------------------------------------------------

ANA = Person(7301001, "Ana", "Silva", "ana.silva@example.com", "+1 502-555-0141", "Louisville", "40202", "Kentucky", "KY", "United States", "US", "Chestnut Street 92")
BEN = Person(7301002, "Ben", "Okafor", "ben.okafor@example.com", "+1 312-555-0172", "Chicago", "60607", "Illinois", "IL", "United States", "US", "1200 W Lake St")
CARA = Person(7301003, "Cara", "Lindqvist", "cara.lindqvist@example.com", "+1 206-555-0113", "Seattle", "98101", "Washington", "WA", "United States", "US", "400 Pine St")
DAN = Person(88, "Dan", "Moreau", "dan.moreau@example.com", "(415) 555-0188", "San Francisco", "94103", "California", "CA", "United States", "US", "969 Market")
ELI = Person(0, "Eli", "Novak", "eli.novak@example.com", "+49 30 5550123", "Berlin", "10115", "Berlin", "BE", "Germany", "DE", "Invalidenstr. 117")
GUS = Person(7301006, "Gus", "Ferreira", "gus.ferreira@example.com", "+351 21 555 0166", "Lisboa", "1100-148", "Lisboa", "LI", "Portugal", "PT", "Rua Augusta 27")
HANA = Person(91, "Hana", "Kim", "hana.kim@example.com", "(503) 555-0191", "Portland", "97205", "Oregon", "OR", "United States", "US", "1120 SW 5th Ave")
IVAN = Person(0, "Ivan", "Petrov", "ivan.petrov@example.com", "(617) 555-0110", "Boston", "02108", "Massachusetts", "MA", "United States", "US", "24 Beacon St")
JIN = Person(7301009, "Jin", "Park", "jin.park@example.com", "+1 646-555-0199", "New York", "10013", "New York", "NY", "United States", "US", "88 Greene St")
KAI = Person(7301010, "Kai", "Mueller", "kai.mueller@example.com", "+1 303-555-0135", "Denver", "80202", "Colorado", "CO", "United States", "US", "1701 Wynkoop St")
MIA = Person(7301013, "Mia", "Laurent", "mia.laurent@example.com", "+1 617-555-0164", "Cambridge", "02139", "Massachusetts", "MA", "United States", "US", "77 Mass Ave")
LEA = Person(7301011, "Lea", "Dubois", "lea.dubois@example.com", "+1 512-555-0127", "Austin", "78701", "Texas", "TX", "United States", "US", "500 Congress Ave")


def shopify_partial_refund():
    oid = 5801001001
    lines = [
        Line(13501001, "Linen shirt", "LS-M-NAT", 1, "45.00"),
        Line(13501002, "Wool socks", "SOCK-3", 2, "10.00"),
        Line(13501003, "Canvas cap", "CAP-1-OLV", 1, "25.00"),
    ]
    common = dict(oid=oid, number=1001, person=ANA, created="2025-05-05T10:00:00-04:00", lines=lines, shipping="10.00")
    refund = shopify_refund(
        960101, oid, "2025-05-07T09:30:00-04:00", "Cap returned: wrong colour",
        [(104101, lines[2], 1)], [(7710003, 7710002, "25.00", "shopify_payments")], "USD", "USD",
    )
    steps = [
        shopify_step("orders/create", "a1c8e2f0-5a10-4c1e-9d01-000000000101", "2025-05-05T14:00:01Z",
                     shopify_order(**common, updated="2025-05-05T10:00:00-04:00", financial_status="authorized", outstanding="100.00"),
                     "2025-05-05T14:00:02Z", "checkout: the card is authorised for 100.00, nothing captured yet"),
        shopify_step("orders/paid", "a1c8e2f0-5a10-4c1e-9d01-000000000102", "2025-05-05T14:05:01Z",
                     shopify_order(**common, updated="2025-05-05T10:05:00-04:00", financial_status="paid"),
                     "2025-05-05T14:05:02Z", "the merchant captures 100.00"),
        shopify_step("refunds/create", "a1c8e2f0-5a10-4c1e-9d01-000000000103", "2025-05-07T13:30:01Z",
                     refund, "2025-05-07T13:30:02Z", "the cap comes back: 25.00 refunded through Shopify Payments"),
        shopify_step("orders/updated", "a1c8e2f0-5a10-4c1e-9d01-000000000104", "2025-05-07T13:30:06Z",
                     shopify_order(**common, updated="2025-05-07T09:30:05-04:00", financial_status="partially_refunded",
                                   current_total="75.00", current_subtotal="65.00", refunds=[refund],
                                   current_qty={13501003: 0}),
                     "2025-05-07T13:30:07Z", "the order after the refund: current_total_price 75.00 is already net of it"),
    ]
    write_journey("shopify_partial_refund", "Shopify: authorised, paid, partly refunded, updated", SHOPIFY_ONLY, steps)


def shopify_costs_margin():
    oid = 5801009001
    jacket = Line(13509001, "Waxed jacket", "JKT-M-OLV", 1, "120.00")
    belt = Line(13509002, "Leather belt", "BELT-L", 2, "25.00")
    lines = [jacket, belt]
    common = dict(oid=oid, number=1013, person=MIA, created="2025-05-20T11:00:00-05:00", lines=lines, shipping="0.00")
    refund = shopify_refund(
        960901, oid, "2025-05-25T10:00:00-05:00", "One belt too many",
        [(104901, belt, 1)], [(7790003, 7790002, "25.00", "shopify_payments")], "USD", "USD",
    )
    steps = [
        erp_step(
            [
                {"sku": "JKT-M-OLV", "unit_cost": "38.00", "currency": "USD", "available": 12, "at": "2025-04-01T00:00:00Z", "item_id": "ERP-JKT-M"},
                {"sku": "BELT-L", "unit_cost": "9.50", "currency": "USD", "available": 40, "at": "2025-04-01T00:00:00Z"},
                {"sku": "JKT-M-OLV", "unit_cost": "41.00", "currency": "USD", "at": "2025-06-01T00:00:00Z"},
            ],
            "2025-05-01T06:00:00Z",
            "the ERP's cost file: jacket 38.00 from April, 41.00 from June; belt 9.50 from April",
        ),
        shopify_step("orders/create", "a1c8e2f0-5a10-4c1e-9d01-000000000901", "2025-05-20T16:00:01Z",
                     shopify_order(**common, updated="2025-05-20T11:00:00-05:00", financial_status="paid"),
                     "2025-05-20T16:00:02Z", "order #1013 paid 170.00: a jacket and two belts"),
        shopify_step("inventory_items/update", "a1c8e2f0-5a10-4c1e-9d01-000000000902", "2025-05-22T09:00:01Z",
                     shopify_inventory_item(44890902, "BELT-L", "11.00", "2025-01-15T08:00:00-05:00", "2025-05-10T08:30:00-05:00"),
                     "2025-05-22T09:00:02Z",
                     "the belt's cost, changed in Shopify on 10 May, arrives after the order (a delayed webhook)"),
        shopify_step("refunds/create", "a1c8e2f0-5a10-4c1e-9d01-000000000903", "2025-05-25T15:00:01Z",
                     refund, "2025-05-25T15:00:02Z", "one belt comes back to stock: 25.00 refunded"),
        shopify_step("orders/updated", "a1c8e2f0-5a10-4c1e-9d01-000000000904", "2025-05-25T15:00:06Z",
                     shopify_order(**common, updated="2025-05-25T10:00:05-05:00", financial_status="partially_refunded",
                                   current_total="145.00", current_subtotal="145.00", refunds=[refund],
                                   current_qty={13509002: 1}),
                     "2025-05-25T15:00:07Z", "the order after the refund: current total 145.00"),
    ]
    write_journey("shopify_costs_margin", "Shopify with ERP and Shopify costs: cost of goods and margin", SHOPIFY_COSTED, steps)


def shopify_full_refund_cancel():
    a, b = 5801002001, 5801002002
    la = [Line(13502001, "Rain jacket", "RJ-L-NVY", 1, "60.00")]
    lb = [Line(13502002, "Trail shoes", "TS-44", 1, "72.00")]
    ca = dict(oid=a, number=1002, person=BEN, created="2025-05-06T08:00:00-05:00", lines=la, shipping="0.00")
    cb = dict(oid=b, number=1003, person=BEN, created="2025-05-08T19:30:00-05:00", lines=lb, shipping="8.00")
    ra = shopify_refund(960201, a, "2025-05-12T11:00:00-05:00", "Too small", [(104201, la[0], 1)],
                        [(7720003, 7720002, "60.00", "shopify_payments")], "USD", "USD")
    rb = shopify_refund(960202, b, "2025-05-09T07:45:00-05:00", "Order cancelled by customer", [(104202, lb[0], 1)],
                        [(7720013, 7720012, "80.00", "shopify_payments")], "USD", "USD",
                        adjustments=[(5520202, "shipping_refund", "-8.00")], restock_type="cancel")
    steps = [
        shopify_step("orders/create", "a1c8e2f0-5a10-4c1e-9d01-000000000201", "2025-05-06T13:00:01Z",
                     shopify_order(**ca, updated="2025-05-06T08:00:00-05:00", financial_status="paid"),
                     "2025-05-06T13:00:02Z", "order #1002, paid 60.00 at checkout"),
        shopify_step("refunds/create", "a1c8e2f0-5a10-4c1e-9d01-000000000202", "2025-05-12T16:00:01Z",
                     ra, "2025-05-12T16:00:02Z", "#1002 returned in full: 60.00 back"),
        shopify_step("orders/updated", "a1c8e2f0-5a10-4c1e-9d01-000000000203", "2025-05-12T16:00:06Z",
                     shopify_order(**ca, updated="2025-05-12T11:00:05-05:00", financial_status="refunded",
                                   current_total="0.00", current_subtotal="0.00", refunds=[ra], current_qty={13502001: 0}),
                     "2025-05-12T16:00:07Z", "#1002 after the refund: current total 0.00"),
        shopify_step("orders/create", "a1c8e2f0-5a10-4c1e-9d01-000000000204", "2025-05-09T00:30:01Z",
                     shopify_order(**cb, updated="2025-05-08T19:30:00-05:00", financial_status="paid"),
                     "2025-05-09T00:30:02Z", "order #1003, paid 80.00 (72.00 + 8.00 shipping)"),
        shopify_step("refunds/create", "a1c8e2f0-5a10-4c1e-9d01-000000000205", "2025-05-09T12:45:01Z",
                     rb, "2025-05-09T12:45:02Z", "#1003 cancelled with a refund of everything, shipping included"),
        shopify_step("orders/cancelled", "a1c8e2f0-5a10-4c1e-9d01-000000000206", "2025-05-09T12:45:06Z",
                     shopify_order(**cb, updated="2025-05-09T07:45:05-05:00", financial_status="refunded",
                                   current_total="0.00", current_subtotal="0.00", refunds=[rb], current_qty={13502002: 0},
                                   cancelled_at="2025-05-09T07:45:00-05:00", cancel_reason="customer"),
                     "2025-05-09T12:45:07Z", "#1003 cancelled"),
    ]
    write_journey("shopify_full_refund_cancel", "Shopify: a full refund, and a cancellation with refund", SHOPIFY_ONLY, steps)


def shopify_order_edit():
    a, b = 5801003001, 5801003002
    la = [Line(13503001, "Ceramic mug", "MUG-2", 2, "12.50"), Line(13503002, "Tea sampler", "TEA-S", 1, "25.00")]
    added = Line(13503003, "Cast iron teapot", "POT-1", 1, "20.00")
    lb = [Line(13503004, "Linen apron", "APR-1", 1, "30.00"), Line(13503005, "Bread knife", "KNF-22", 1, "60.00")]
    ca = dict(oid=a, number=1004, person=CARA, created="2025-05-10T09:00:00-07:00", shipping="0.00")
    cb = dict(oid=b, number=1005, person=CARA, created="2025-05-11T15:00:00-07:00", lines=lb, shipping="0.00")
    rb = shopify_refund(960301, b, "2025-05-11T17:20:00-07:00", "Order edit: knife removed (out of stock)",
                        [(104301, lb[1], 1)], [(7730013, 7730012, "60.00", "shopify_payments")], "USD", "USD",
                        restock_type="cancel")
    steps = [
        shopify_step("orders/create", "a1c8e2f0-5a10-4c1e-9d01-000000000301", "2025-05-10T16:00:01Z",
                     shopify_order(**ca, lines=la, updated="2025-05-10T09:00:00-07:00", financial_status="paid"),
                     "2025-05-10T16:00:02Z", "order #1004 paid 50.00"),
        shopify_step("orders/updated", "a1c8e2f0-5a10-4c1e-9d01-000000000302", "2025-05-10T18:00:01Z",
                     shopify_order(**ca, lines=la + [added], updated="2025-05-10T11:00:00-07:00",
                                   financial_status="partially_paid", total_override="50.00",
                                   current_total="70.00", current_subtotal="70.00", outstanding="20.00"),
                     "2025-05-10T18:00:02Z", "order edit: a teapot (20.00) is added; 20.00 is outstanding"),
        shopify_step("orders/paid", "a1c8e2f0-5a10-4c1e-9d01-000000000303", "2025-05-10T19:10:01Z",
                     shopify_order(**ca, lines=la + [added], updated="2025-05-10T12:10:00-07:00",
                                   financial_status="paid", total_override="50.00",
                                   current_total="70.00", current_subtotal="70.00", outstanding="0.00"),
                     "2025-05-10T19:10:02Z", "the customer pays the 20.00 invoice"),
        shopify_step("orders/create", "a1c8e2f0-5a10-4c1e-9d01-000000000304", "2025-05-11T22:00:01Z",
                     shopify_order(**cb, updated="2025-05-11T15:00:00-07:00", financial_status="paid"),
                     "2025-05-11T22:00:02Z", "order #1005 paid 90.00"),
        shopify_step("refunds/create", "a1c8e2f0-5a10-4c1e-9d01-000000000305", "2025-05-12T00:20:01Z",
                     rb, "2025-05-12T00:20:02Z", "order edit removes the knife and refunds its 60.00"),
        shopify_step("orders/updated", "a1c8e2f0-5a10-4c1e-9d01-000000000306", "2025-05-12T00:20:06Z",
                     shopify_order(**cb, updated="2025-05-11T17:20:05-07:00", financial_status="partially_refunded",
                                   current_total="30.00", current_subtotal="30.00", refunds=[rb], current_qty={13503005: 0}),
                     "2025-05-12T00:20:07Z", "#1005 after the edit: current total 30.00"),
    ]
    write_journey("shopify_order_edit", "Shopify: an item added after payment and collected; an item removed and refunded", SHOPIFY_ONLY, steps)


def woo_stripe():
    oid = 4127
    pi, ch = "pi_3QxA7mLkdIwHu7ix0p4127Aa", "ch_3QxA7mLkdIwHu7ix0p4127Ab"
    txn, re = "txn_3QxA7mLkdIwHu7ix0p4127Ac", "re_3QxA7mLkdIwHu7ix0p4127Ad"
    dp, dtxn = "dp_1QyB2cLkdIwHu7ixDsp4127A", "txn_1QyB2cLkdIwHu7ixWd4127B"
    meta = {"order_id": str(oid), "site_url": WOO_SITE, "customer_name": "Dan Moreau", "customer_email": DAN.email, "payment_type": "single", "signature": "4127:9f2b6d0a1c"}
    lines = [(4128, "Espresso grinder", "EG-64", 1, "110.00")]
    common = dict(oid=oid, person=DAN, cur="USD", created_gmt="2025-05-10T14:00:00", lines=lines, shipping="10.00",
                  payment_method="stripe", payment_title="Credit / Debit Card", customer_id=88)
    charge = lambda **k: stripe_charge(ch=ch, pi=pi, amount=12000, cur="usd", created="2025-05-10T14:00:04Z", person=DAN, metadata=meta, txn=txn, **k)
    wd = stripe_dispute_txn(dtxn, dp, -9000, 1500, "usd", "2025-05-20T16:00:00Z", "adjustment")
    disp = lambda status, bts: stripe_dispute(dp=dp, ch=ch, pi=pi, amount=9000, cur="usd", created="2025-05-20T16:00:00Z",
                                              status=status, reason="product_not_received", case_type="chargeback", bts=bts)
    steps = [
        woo_step("order.created", woo_order(**common, status="pending", modified_gmt="2025-05-10T14:00:00"),
                 "3f1e0a7c-1f2d-4b5e-8a9c-000000004127", "2025-05-10T14:00:01Z", "checkout: order 4127 placed, awaiting payment"),
        stripe_step(stripe_event("evt_3QxA7mLkdIwHu7ix0p4127E1", "payment_intent.succeeded", "2025-05-10T14:00:05Z",
                                 stripe_intent(pi=pi, ch=ch, amount=12000, cur="usd", created="2025-05-10T14:00:02Z", metadata=meta, person=DAN),
                                 request="req_4127a"),
                    "2025-05-10T14:00:06Z", "Stripe: the payment intent succeeded, 120.00"),
        stripe_step(stripe_event("evt_3QxA7mLkdIwHu7ix0p4127E2", "charge.succeeded", "2025-05-10T14:00:05Z", charge(), request="req_4127a"),
                    "2025-05-10T14:00:06Z", "Stripe: its charge succeeded (the fee is in a balance transaction webhooks do not expand)"),
        woo_step("order.updated", woo_order(**common, status="processing", modified_gmt="2025-05-10T14:00:07",
                                            transaction_id=pi, paid_gmt="2025-05-10T14:00:07"),
                 "3f1e0a7c-1f2d-4b5e-8a9c-000000004128", "2025-05-10T14:00:08Z", "WooCommerce marks the order paid (processing)"),
        stripe_step(stripe_event("evt_3QxA7mLkdIwHu7ix0p4127E3", "charge.refunded", "2025-05-12T09:00:00Z",
                                 charge(amount_refunded=3000), previous={"amount_refunded": 0}, request="req_4127b"),
                    "2025-05-12T09:00:01Z", "Stripe: 30.00 refunded (the charge's cumulative amount_refunded)"),
        stripe_step(stripe_event("evt_3QxA7mLkdIwHu7ix0p4127E4", "refund.created", "2025-05-12T09:00:00Z",
                                 stripe_refund(re=re, ch=ch, pi=pi, amount=3000, cur="usd", created="2025-05-12T09:00:00Z",
                                               status="succeeded", reason="requested_by_customer"), request="req_4127b"),
                    "2025-05-12T09:00:01Z", "Stripe: the refund object, succeeded"),
        woo_step("order.updated", woo_order(**common, status="processing", modified_gmt="2025-05-12T09:00:02",
                                            transaction_id=pi, paid_gmt="2025-05-10T14:00:07",
                                            refunds=[(4131, "Burr carrier arrived cracked", "30.00")]),
                 "3f1e0a7c-1f2d-4b5e-8a9c-000000004129", "2025-05-12T09:00:03Z", "WooCommerce lists the same refund (no gateway named)"),
        stripe_step(stripe_event("evt_1QyB2cLkdIwHu7ixDsp4127E5", "charge.dispute.created", "2025-05-20T16:00:00Z", disp("needs_response", [wd])),
                    "2025-05-20T16:00:01Z", "Stripe: a chargeback of the remaining 90.00; funds and a 15.00 fee withdrawn"),
        stripe_step(stripe_event("evt_1QyB2cLkdIwHu7ixDsp4127E6", "charge.dispute.funds_withdrawn", "2025-05-20T16:00:01Z", disp("needs_response", [wd])),
                    "2025-05-20T16:00:02Z", "Stripe: the withdrawal"),
        stripe_step(stripe_event("evt_1QyB2cLkdIwHu7ixDsp4127E7", "charge.dispute.updated", "2025-05-25T10:00:00Z", disp("under_review", [wd]),
                                 previous={"status": "needs_response"}),
                    "2025-05-25T10:00:01Z", "Stripe: evidence submitted"),
        stripe_step(stripe_event("evt_1QyB2cLkdIwHu7ixDsp4127E8", "charge.dispute.closed", "2025-07-01T12:00:00Z", disp("lost", [wd]),
                                 previous={"status": "under_review"}),
                    "2025-07-01T12:00:01Z", "Stripe: the dispute is lost"),
    ]
    write_journey("woo_stripe", "WooCommerce + Stripe: payment, partial refund, lost chargeback with its fee", WOO_STRIPE, steps)


def woo_paypal():
    oid = 5230
    cap, refund_id, dispute = "7NW873794T343360M", "1JU08902781691411", "PP-D-27803"
    pp_order = "5O190127TN364715T"
    lines = [(5231, "Trekking poles", "TP-2", 1, "79.00")]
    common = dict(oid=oid, person=ELI, cur="EUR", created_gmt="2025-05-14T08:00:00", lines=lines, shipping="6.00",
                  payment_method="ppcp-gateway", payment_title="PayPal")
    capture = {
        "id": cap,
        "amount": {"currency_code": "EUR", "value": "85.00"},
        "final_capture": True,
        "seller_protection": {"status": "ELIGIBLE", "dispute_categories": ["ITEM_NOT_RECEIVED", "UNAUTHORIZED_TRANSACTION"]},
        "seller_receivable_breakdown": {
            "gross_amount": {"currency_code": "EUR", "value": "85.00"},
            "paypal_fee": {"currency_code": "EUR", "value": "2.47"},
            "net_amount": {"currency_code": "EUR", "value": "82.53"},
        },
        "invoice_id": f"WC-{oid}",
        "custom_id": str(oid),
        "status": "COMPLETED",
        "supplementary_data": {"related_ids": {"order_id": pp_order}},
        "create_time": "2025-05-14T08:01:10Z",
        "update_time": "2025-05-14T08:01:10Z",
        "links": [
            {"href": f"{PAYPAL_API}/v2/payments/captures/{cap}", "rel": "self", "method": "GET"},
            {"href": f"{PAYPAL_API}/v2/payments/captures/{cap}/refund", "rel": "refund", "method": "POST"},
            {"href": f"{PAYPAL_API}/v2/checkout/orders/{pp_order}", "rel": "up", "method": "GET"},
        ],
    }
    refund = {
        "id": refund_id,
        "amount": {"currency_code": "EUR", "value": "20.00"},
        "seller_payable_breakdown": {
            "gross_amount": {"currency_code": "EUR", "value": "20.00"},
            "paypal_fee": {"currency_code": "EUR", "value": "0.50"},
            "net_amount": {"currency_code": "EUR", "value": "19.50"},
            "total_refunded_amount": {"currency_code": "EUR", "value": "20.00"},
        },
        "invoice_id": f"WC-{oid}",
        "custom_id": str(oid),
        "status": "COMPLETED",
        "note_to_payer": "Box damaged in transit",
        "create_time": "2025-05-18T12:00:00Z",
        "update_time": "2025-05-18T12:00:00Z",
        "links": [
            {"href": f"{PAYPAL_API}/v2/payments/refunds/{refund_id}", "rel": "self", "method": "GET"},
            {"href": f"{PAYPAL_API}/v2/payments/captures/{cap}", "rel": "up", "method": "GET"},
        ],
    }

    def disp(status, outcome=None, at="2025-05-25T10:00:00Z"):
        d = {
            "dispute_id": dispute,
            "create_time": "2025-05-25T10:00:00.000Z",
            "update_time": at.replace("Z", ".000Z"),
            "disputed_transactions": [
                {
                    "seller_transaction_id": cap,
                    "create_time": "2025-05-14T08:01:10.000Z",
                    "transaction_status": "COMPLETED",
                    "gross_amount": {"currency_code": "EUR", "value": "85.00"},
                    "invoice_number": f"WC-{oid}",
                    "custom": str(oid),
                    "buyer": {"name": "Eli Novak"},
                    "seller": {"merchant_id": "7KX2QW9ZB3M4A", "name": "Acme Outfitters"},
                }
            ],
            "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
            "status": status,
            "dispute_amount": {"currency_code": "EUR", "value": "65.00"},
            "dispute_life_cycle_stage": "INQUIRY",
            "dispute_channel": "INTERNAL",
            "messages": [{"posted_by": "BUYER", "time_posted": "2025-05-25T10:00:00.000Z", "content": "Parcel not here yet."}],
            "links": [{"href": f"{PAYPAL_API}/v1/customer/disputes/{dispute}", "rel": "self", "method": "GET"}],
        }
        if outcome:
            d["dispute_outcome"] = {"outcome_code": outcome, "amount_refunded": {"currency_code": "EUR", "value": "0.00"}}
        return d

    steps = [
        woo_step("order.created", woo_order(**common, status="pending", modified_gmt="2025-05-14T08:00:00"),
                 "3f1e0a7c-1f2d-4b5e-8a9c-000000005230", "2025-05-14T08:00:01Z", "checkout: order 5230 placed, awaiting PayPal"),
        paypal_step(paypal_event("WH-2WR32451HC0233532-67976317FL4543714", "PAYMENT.CAPTURE.COMPLETED", "2025-05-14T08:01:11.000Z",
                                 "capture", capture, "Payment completed for EUR 85.0 EUR"),
                    "2025-05-14T08:01:12Z", "PayPal: 85.00 captured, fee 2.47 (custom_id 5230, invoice_id WC-5230)"),
        woo_step("order.updated", woo_order(**common, status="processing", modified_gmt="2025-05-14T08:01:15",
                                            transaction_id=cap, paid_gmt="2025-05-14T08:01:15"),
                 "3f1e0a7c-1f2d-4b5e-8a9c-000000005231", "2025-05-14T08:01:16Z", "WooCommerce marks the order paid"),
        paypal_step(paypal_event("WH-1GE84257G0350133W-6RW800890C634293G", "PAYMENT.CAPTURE.REFUNDED", "2025-05-18T12:00:01.000Z",
                                 "refund", refund, "A EUR 20.0 EUR capture payment was refunded"),
                    "2025-05-18T12:00:02Z", "PayPal: 20.00 refunded"),
        woo_step("order.updated", woo_order(**common, status="processing", modified_gmt="2025-05-18T12:00:05",
                                            transaction_id=cap, paid_gmt="2025-05-14T08:01:15",
                                            refunds=[(5236, "Box damaged in transit", "20.00")]),
                 "3f1e0a7c-1f2d-4b5e-8a9c-000000005232", "2025-05-18T12:00:06Z", "WooCommerce lists the refund"),
        paypal_step(paypal_event("WH-4M0448861G563140B-9EX36365822141321", "CUSTOMER.DISPUTE.CREATED", "2025-05-25T10:00:01.000Z",
                                 "dispute", disp("OPEN"), "A new dispute opened with Case # PP-D-27803", version="1.0"),
                    "2025-05-25T10:00:02Z", "PayPal: the buyer opens an inquiry for 65.00"),
        paypal_step(paypal_event("WH-3K6512087A7543904-8YB73411LD8830725", "CUSTOMER.DISPUTE.RESOLVED", "2025-06-02T10:00:01.000Z",
                                 "dispute", disp("RESOLVED", "RESOLVED_SELLER_FAVOUR", "2025-06-02T10:00:00Z"),
                                 "A dispute was resolved with case # PP-D-27803", version="1.0"),
                    "2025-06-02T10:00:02Z", "PayPal: resolved in the seller's favour"),
    ]
    tenant = {"stores": ["woocommerce"], "paypal": {"fields": ["custom_id", "invoice_id"], "pattern": "^(?:WC-)?(?P<order>\\d+)$"}}
    write_journey("woo_paypal", "WooCommerce + PayPal: capture with fee, refund, inquiry won", tenant, steps)


def shopify_adyen():
    oid = 5801006001
    ref = f"{oid}-1"
    auth, c1, c2, rf, dsp = "QW8X2L3M4N5P6R7S", "CP1A2B3C4D5E6F7G", "CP2H3J4K5L6M7N8P", "RF9Q8W7E6R5T4Y3U", "DS5V4B3N2M1L0K9J"
    lines = [Line(13506001, "Leather weekender bag", "LWB-1-BRN", 1, "180.00")]
    common = dict(oid=oid, number=1006, person=GUS, created="2025-05-15T11:00:00+02:00", lines=lines, shipping="20.00",
                  shop_cur="EUR", gateways=("adyen",))
    refund = shopify_refund(960601, oid, "2025-05-20T15:00:00+02:00", "Goodwill: scuffed corner", [],
                            [(7760003, 7760001, "50.00", "adyen")], "EUR", "EUR",
                            adjustments=[(5560601, "refund_discrepancy", "-50.00")])
    cb_extra = {"chargebackReasonCode": "10.4", "modificationMerchantReferences": "", "chargebackSchemeCode": "visa", "defensePeriodEndsAt": "2025-06-30T08:00:00+02:00"}
    steps = [
        shopify_step("orders/create", "a1c8e2f0-5a10-4c1e-9d01-000000000601", "2025-05-15T09:00:01Z",
                     shopify_order(**common, updated="2025-05-15T11:00:00+02:00", financial_status="authorized", outstanding="200.00"),
                     "2025-05-15T09:00:02Z", "order #1006, 200.00 EUR authorised"),
        adyen_step(adyen_item(code="AUTHORISATION", psp=auth, original=None, merchant_ref=ref, amount=20000, cur="EUR",
                              date="2025-05-15T11:00:02+02:00", reason="058259:1111:03/2030",
                              extra={"authCode": "058259", "cardSummary": "1111", "expiryDate": "03/2030", "shopperReference": str(GUS.cid)}),
                   "2025-05-15T09:00:05Z", "Adyen: authorised 200.00 (manual capture)"),
        adyen_step(adyen_item(code="CAPTURE", psp=c1, original=auth, merchant_ref=ref, amount=12000, cur="EUR", date="2025-05-16T09:00:00+02:00"),
                   "2025-05-16T07:00:03Z", "Adyen: first partial capture, 120.00 (bag shipped)"),
        shopify_step("orders/updated", "a1c8e2f0-5a10-4c1e-9d01-000000000602", "2025-05-16T07:00:06Z",
                     shopify_order(**common, updated="2025-05-16T09:00:05+02:00", financial_status="partially_paid", outstanding="80.00"),
                     "2025-05-16T07:00:07Z", "Shopify: partially paid, 80.00 outstanding"),
        adyen_step(adyen_item(code="CAPTURE", psp=c2, original=auth, merchant_ref=ref, amount=8000, cur="EUR", date="2025-05-18T09:00:00+02:00"),
                   "2025-05-18T07:00:03Z", "Adyen: second partial capture, 80.00"),
        shopify_step("orders/updated", "a1c8e2f0-5a10-4c1e-9d01-000000000603", "2025-05-18T07:00:06Z",
                     shopify_order(**common, updated="2025-05-18T09:00:05+02:00", financial_status="paid", outstanding="0.00"),
                     "2025-05-18T07:00:07Z", "Shopify: paid"),
        shopify_step("refunds/create", "a1c8e2f0-5a10-4c1e-9d01-000000000604", "2025-05-20T13:00:01Z",
                     refund, "2025-05-20T13:00:02Z", "Shopify: 50.00 refunded through the Adyen gateway"),
        adyen_step(adyen_item(code="REFUND", psp=rf, original=auth, merchant_ref=ref, amount=5000, cur="EUR", date="2025-05-20T15:00:03+02:00"),
                   "2025-05-20T13:00:05Z", "Adyen: the refund, 50.00"),
        shopify_step("orders/updated", "a1c8e2f0-5a10-4c1e-9d01-000000000605", "2025-05-20T13:00:06Z",
                     shopify_order(**common, updated="2025-05-20T15:00:05+02:00", financial_status="partially_refunded",
                                   current_total="150.00", current_subtotal="130.00", refunds=[refund]),
                     "2025-05-20T13:00:07Z", "Shopify: the order after the refund"),
        adyen_step(adyen_item(code="NOTIFICATION_OF_CHARGEBACK", psp=dsp, original=auth, merchant_ref=ref, amount=15000, cur="EUR",
                              date="2025-06-10T08:00:00+02:00", reason="Other Fraud-Card Absent Environment",
                              extra=dict(cb_extra, disputeStatus="Undefended")),
                   "2025-06-10T06:00:03Z", "Adyen: notice of a 150.00 chargeback"),
        adyen_step(adyen_item(code="CHARGEBACK", psp=dsp, original=auth, merchant_ref=ref, amount=15000, cur="EUR",
                              date="2025-06-12T08:00:00+02:00", reason="Other Fraud-Card Absent Environment",
                              extra=dict(cb_extra, disputeStatus="Undefended")),
                   "2025-06-12T06:00:03Z", "Adyen: the chargeback debits 150.00"),
        adyen_step(adyen_item(code="CHARGEBACK_REVERSED", psp=dsp, original=auth, merchant_ref=ref, amount=15000, cur="EUR",
                              date="2025-07-02T08:00:00+02:00", reason="Other Fraud-Card Absent Environment",
                              extra=dict(cb_extra, disputeStatus="Won")),
                   "2025-07-02T06:00:03Z", "Adyen: the defence wins, 150.00 comes back"),
    ]
    tenant = {"stores": ["shopify"], "adyen": {"store": "shopify", "pattern": "^(?P<order>\\d+)-\\d+$"}, "adyen_capture": "manual"}
    write_journey("shopify_adyen", "Shopify + Adyen: authorisation, two partial captures, refund, chargeback reversed", tenant, steps)


def stripe_refund_fails():
    oid = 4302
    pi, ch = "pi_3QzC1aLkdIwHu7ix0p4302Aa", "ch_3QzC1aLkdIwHu7ix0p4302Ab"
    txn, re = "txn_3QzC1aLkdIwHu7ix0p4302Ac", "re_3QzC1aLkdIwHu7ix0p4302Ad"
    meta = {"order_id": str(oid), "site_url": WOO_SITE, "customer_name": "Hana Kim", "customer_email": HANA.email, "payment_type": "single", "signature": "4302:77aa01b2c3"}
    lines = [(4303, "Phone case", "PC-15", 1, "39.00")]
    common = dict(oid=oid, person=HANA, cur="USD", created_gmt="2025-05-21T10:00:00", lines=lines, shipping="6.00",
                  payment_method="stripe", payment_title="Credit / Debit Card", customer_id=91)
    charge = lambda **k: stripe_charge(ch=ch, pi=pi, amount=4500, cur="usd", created="2025-05-21T10:00:03Z", person=HANA, metadata=meta, txn=txn, **k)
    rf = lambda status, **k: stripe_refund(re=re, ch=ch, pi=pi, amount=4500, cur="usd", created="2025-05-23T12:00:00Z", status=status,
                                           reason="requested_by_customer", **k)
    steps = [
        woo_step("order.created", woo_order(**common, status="pending", modified_gmt="2025-05-21T10:00:00"),
                 "3f1e0a7c-1f2d-4b5e-8a9c-000000004302", "2025-05-21T10:00:01Z", "checkout: order 4302 placed"),
        stripe_step(stripe_event("evt_3QzC1aLkdIwHu7ix0p4302E1", "payment_intent.succeeded", "2025-05-21T10:00:04Z",
                                 stripe_intent(pi=pi, ch=ch, amount=4500, cur="usd", created="2025-05-21T10:00:01Z", metadata=meta, person=HANA)),
                    "2025-05-21T10:00:05Z", "Stripe: 45.00 paid"),
        stripe_step(stripe_event("evt_3QzC1aLkdIwHu7ix0p4302E2", "charge.succeeded", "2025-05-21T10:00:04Z", charge()),
                    "2025-05-21T10:00:05Z", "Stripe: the charge"),
        woo_step("order.updated", woo_order(**common, status="processing", modified_gmt="2025-05-21T10:00:06",
                                            transaction_id=pi, paid_gmt="2025-05-21T10:00:06"),
                 "3f1e0a7c-1f2d-4b5e-8a9c-000000004303", "2025-05-21T10:00:07Z", "WooCommerce: processing"),
        stripe_step(stripe_event("evt_3QzC1aLkdIwHu7ix0p4302E3", "refund.created", "2025-05-23T12:00:00Z", rf("succeeded")),
                    "2025-05-23T12:00:01Z", "Stripe: a full refund is created from the Stripe dashboard (succeeded for now)"),
        stripe_step(stripe_event("evt_3QzC1aLkdIwHu7ix0p4302E4", "charge.refunded", "2025-05-23T12:00:00Z",
                                 charge(amount_refunded=4500, refunded=True), previous={"amount_refunded": 0, "refunded": False}),
                    "2025-05-23T12:00:01Z", "Stripe: the charge's amount_refunded is 45.00"),
        stripe_step(stripe_event("evt_3QzC1aLkdIwHu7ix0p4302E5", "refund.failed", "2025-05-30T07:00:00Z",
                                 rf("failed", failure_reason="expired_or_canceled_card"), previous={"status": "succeeded"}),
                    "2025-05-30T07:00:01Z", "Stripe: the card was closed, the refund failed; the money stays with the merchant"),
        stripe_step(stripe_event("evt_3QzC1aLkdIwHu7ix0p4302E6", "charge.refund.updated", "2025-05-30T07:00:00Z",
                                 rf("failed", failure_reason="expired_or_canceled_card"), previous={"status": "succeeded"}),
                    "2025-05-30T07:00:01Z", "Stripe: the same failure as charge.refund.updated"),
    ]
    write_journey("stripe_refund_fails", "WooCommerce + Stripe: a refund that succeeds, then fails", WOO_STRIPE, steps)


def stripe_inquiry_refund():
    oid = 4410
    pi, ch = "pi_3R0D2bLkdIwHu7ix0p4410Aa", "ch_3R0D2bLkdIwHu7ix0p4410Ab"
    txn, re = "txn_3R0D2bLkdIwHu7ix0p4410Ac", "re_3R0D2bLkdIwHu7ix0p4410Ad"
    dp = "dp_1R1E3cLkdIwHu7ixDsp4410A"
    meta = {"order_id": str(oid), "site_url": WOO_SITE, "customer_name": "Ivan Petrov", "customer_email": IVAN.email, "payment_type": "single", "signature": "4410:0c1d2e3f4a"}
    lines = [(4411, "Climbing chalk bag", "CB-2", 2, "35.00")]
    common = dict(oid=oid, person=IVAN, cur="USD", created_gmt="2025-05-22T09:00:00", lines=lines, shipping="10.00",
                  payment_method="stripe", payment_title="Credit / Debit Card")
    charge = lambda **k: stripe_charge(ch=ch, pi=pi, amount=8000, cur="usd", created="2025-05-22T09:00:02Z", person=IVAN, metadata=meta, txn=txn, **k)
    disp = lambda status: stripe_dispute(dp=dp, ch=ch, pi=pi, amount=8000, cur="usd", created="2025-06-01T10:00:00Z",
                                         status=status, reason="fraudulent", case_type="inquiry")
    steps = [
        woo_step("order.created", woo_order(**common, status="pending", modified_gmt="2025-05-22T09:00:00"),
                 "3f1e0a7c-1f2d-4b5e-8a9c-000000004410", "2025-05-22T09:00:01Z", "checkout: order 4410 placed"),
        stripe_step(stripe_event("evt_3R0D2bLkdIwHu7ix0p4410E1", "payment_intent.succeeded", "2025-05-22T09:00:03Z",
                                 stripe_intent(pi=pi, ch=ch, amount=8000, cur="usd", created="2025-05-22T09:00:01Z", metadata=meta, person=IVAN)),
                    "2025-05-22T09:00:04Z", "Stripe: 80.00 paid"),
        stripe_step(stripe_event("evt_3R0D2bLkdIwHu7ix0p4410E2", "charge.succeeded", "2025-05-22T09:00:03Z", charge()),
                    "2025-05-22T09:00:04Z", "Stripe: the charge"),
        woo_step("order.updated", woo_order(**common, status="processing", modified_gmt="2025-05-22T09:00:05",
                                            transaction_id=pi, paid_gmt="2025-05-22T09:00:05"),
                 "3f1e0a7c-1f2d-4b5e-8a9c-000000004411", "2025-05-22T09:00:06Z", "WooCommerce: processing"),
        stripe_step(stripe_event("evt_1R1E3cLkdIwHu7ixDsp4410E3", "charge.dispute.created", "2025-06-01T10:00:00Z", disp("warning_needs_response")),
                    "2025-06-01T10:00:01Z", "Stripe: an inquiry (early fraud warning stage) for 80.00; no money moves"),
        stripe_step(stripe_event("evt_3R0D2bLkdIwHu7ix0p4410E4", "refund.created", "2025-06-02T11:00:00Z",
                                 stripe_refund(re=re, ch=ch, pi=pi, amount=8000, cur="usd", created="2025-06-02T11:00:00Z",
                                               status="succeeded", reason="fraudulent")),
                    "2025-06-02T11:00:01Z", "Stripe: the merchant refunds the 80.00 instead of contesting"),
        stripe_step(stripe_event("evt_3R0D2bLkdIwHu7ix0p4410E5", "charge.refunded", "2025-06-02T11:00:00Z",
                                 charge(amount_refunded=8000, refunded=True, disputed=True), previous={"amount_refunded": 0, "refunded": False}),
                    "2025-06-02T11:00:01Z", "Stripe: the charge is refunded in full"),
        woo_step("order.updated", woo_order(**common, status="refunded", modified_gmt="2025-06-02T11:00:02",
                                            transaction_id=pi, paid_gmt="2025-05-22T09:00:05",
                                            refunds=[(4415, "Card holder did not recognise the charge", "80.00")]),
                 "3f1e0a7c-1f2d-4b5e-8a9c-000000004412", "2025-06-02T11:00:03Z", "WooCommerce: refunded (the same refund, no gateway named)"),
        stripe_step(stripe_event("evt_1R1E3cLkdIwHu7ixDsp4410E6", "charge.dispute.closed", "2025-06-03T10:00:00Z", disp("warning_closed")),
                    "2025-06-03T10:00:01Z", "Stripe: the inquiry closes without a chargeback"),
    ]
    write_journey("stripe_inquiry_refund", "WooCommerce + Stripe: an inquiry answered with a refund", WOO_STRIPE, steps)


def shopify_presentment():
    oid = 5801009001
    rate = Decimal("100") / Decimal("92")  # presentment USD per shop EUR
    lines = [Line(13509001, "Merino sweater", "MS-M-GRY", 1, "90.00", shop_price="82.80")]
    common = dict(oid=oid, number=1009, person=JIN, created="2025-05-25T10:00:00-04:00", lines=lines, shipping="10.00",
                  shop_cur="EUR", pres_cur="USD", rate=rate)
    refund = shopify_refund(960901, oid, "2025-05-28T16:00:00-04:00", "Late delivery: 30.00 back", [],
                            [(7790003, 7790002, "30.00", "shopify_payments")], "EUR", "USD", rate=rate,
                            adjustments=[(5590901, "refund_discrepancy", "-30.00")])
    steps = [
        shopify_step("orders/create", "a1c8e2f0-5a10-4c1e-9d01-000000000901", "2025-05-25T14:00:01Z",
                     shopify_order(**common, updated="2025-05-25T10:00:00-04:00", financial_status="paid"),
                     "2025-05-25T14:00:02Z", "a EUR shop; the customer pays 100.00 USD (92.00 EUR)"),
        shopify_step("refunds/create", "a1c8e2f0-5a10-4c1e-9d01-000000000902", "2025-05-28T20:00:01Z",
                     refund, "2025-05-28T20:00:02Z", "30.00 USD refunded"),
        shopify_step("orders/updated", "a1c8e2f0-5a10-4c1e-9d01-000000000903", "2025-05-28T20:00:06Z",
                     shopify_order(**common, updated="2025-05-28T16:00:05-04:00", financial_status="partially_refunded",
                                   current_total="70.00", current_subtotal="60.00", refunds=[refund]),
                     "2025-05-28T20:00:07Z", "the order after the refund: current total 70.00 USD / 64.40 EUR"),
    ]
    write_journey("shopify_presentment", "Shopify: EUR shop, customer pays and is refunded in USD", SHOPIFY_ONLY, steps)


def combined_parcel():
    a, b = 5801010001, 5801010002
    tracking = "1Z999AA10123456784"
    la = [Line(13510001, "Camp stove", "CS-1", 1, "30.00")]
    lb = [Line(13510002, "Fuel canister", "FC-230", 2, "10.00")]
    ca = dict(oid=a, number=1010, person=KAI, created="2025-06-01T10:00:00-06:00", lines=la, shipping="0.00")
    cb = dict(oid=b, number=1011, person=KAI, created="2025-06-01T10:20:00-06:00", lines=lb, shipping="0.00")
    cp1 = aftership_checkpoint("2025-06-02T13:05:00+00:00", "InfoReceived", "InfoReceived_001", "Shipper created a label, UPS has not received the package yet.", "Denver", "CO")
    cp2 = aftership_checkpoint("2025-06-02T19:40:00+00:00", "InTransit", "InTransit_001", "Departed from Facility", "Commerce City", "CO")
    cp3 = aftership_checkpoint("2025-06-04T14:10:00+00:00", "OutForDelivery", "OutForDelivery_001", "Out For Delivery Today", "Denver", "CO")
    cp4 = aftership_checkpoint("2025-06-04T15:30:00+00:00", "Delivered", "Delivered_001", "Delivered: front porch", "Denver", "CO")
    steps = [
        shopify_step("orders/create", "a1c8e2f0-5a10-4c1e-9d01-000000001001", "2025-06-01T16:00:01Z",
                     shopify_order(**ca, updated="2025-06-01T10:00:00-06:00", financial_status="paid"),
                     "2025-06-01T16:00:02Z", "order #1010, 30.00"),
        shopify_step("orders/create", "a1c8e2f0-5a10-4c1e-9d01-000000001002", "2025-06-01T16:20:01Z",
                     shopify_order(**cb, updated="2025-06-01T10:20:00-06:00", financial_status="paid"),
                     "2025-06-01T16:20:02Z", "order #1011, 20.00, placed twenty minutes later"),
        shopify_step("fulfillments/create", "a1c8e2f0-5a10-4c1e-9d01-000000001003", "2025-06-02T13:00:01Z",
                     shopify_fulfillment(4401010001, a, "#1010", "2025-06-02T07:00:00-06:00", tracking, la),
                     "2025-06-02T13:00:02Z", "both orders go in one parcel: #1010's fulfillment"),
        shopify_step("fulfillments/create", "a1c8e2f0-5a10-4c1e-9d01-000000001004", "2025-06-02T13:00:31Z",
                     shopify_fulfillment(4401010002, b, "#1011", "2025-06-02T07:00:30-06:00", tracking, lb),
                     "2025-06-02T13:00:32Z", "#1011's fulfillment, same tracking number"),
        aftership_step("0f6a3c1e-7b2d-4e8f-9a01-000000001005", "2025-06-02T19:41:00Z", tracking, "InTransit", "InTransit_001",
                       [cp1, cp2], "2025-06-02T19:41:02Z", "AfterShip: in transit (the tracking names no order)"),
        aftership_step("0f6a3c1e-7b2d-4e8f-9a01-000000001006", "2025-06-04T15:31:00Z", tracking, "Delivered", "Delivered_001",
                       [cp1, cp2, cp3, cp4], "2025-06-04T15:31:02Z", "AfterShip: delivered"),
    ]
    write_journey("combined_parcel", "Shopify + AfterShip: one parcel carries two orders", SHOPIFY_ONLY, steps)


def helpdesk_return():
    oid = 5801011001
    lines = [Line(13511001, "Running shorts", "RS-M-BLK", 1, "49.00")]
    order = shopify_order(oid=oid, number=1012, person=LEA, created="2025-06-05T12:00:00-05:00", lines=lines, shipping="6.00",
                          updated="2025-06-05T12:00:00-05:00", financial_status="paid")

    def ticket(status, updated, closed=None, extra_messages=()):
        return {
            "id": 88012,
            "uri": "/api/tickets/88012/",
            "external_id": None,
            "language": "en",
            "status": status,
            "priority": "normal",
            "channel": "email",
            "via": "email",
            "from_agent": False,
            "spam": False,
            "customer": {"id": 660012, "email": LEA.email, "name": "Lea Dubois", "firstname": "Lea", "lastname": "Dubois"},
            "assignee_user": {"id": 12, "email": "support@acme-outfitters.example", "name": "Support"} if closed else None,
            "subject": "Return for order #1012 - wrong size",
            "tags": [{"id": 301, "name": "RETURN", "decoration": None}, {"id": 302, "name": "size", "decoration": None}],
            "created_datetime": "2025-06-09T08:00:00.000000+00:00",
            "opened_datetime": "2025-06-09T08:00:00.000000+00:00",
            "updated_datetime": updated,
            "closed_datetime": closed,
            "last_message_datetime": updated,
            "last_received_message_datetime": "2025-06-09T08:00:00.000000+00:00",
            "satisfaction_survey": None,
            "meta": None,
            "messages": [
                {"id": 5101, "from_agent": False, "public": True, "channel": "email",
                 "subject": "Return for order #1012 - wrong size",
                 "body_text": "The shorts from order #1012 are too big, can I return them?",
                 "created_datetime": "2025-06-09T08:00:00+00:00", "sent_datetime": "2025-06-09T08:00:00+00:00"},
                *extra_messages,
            ],
        }

    reply = {"id": 5102, "from_agent": True, "public": True, "channel": "email", "subject": "Re: Return for order #1012 - wrong size",
             "body_text": "Of course: here is your prepaid return label.",
             "created_datetime": "2025-06-10T16:00:00+00:00", "sent_datetime": "2025-06-10T16:00:00+00:00"}
    steps = [
        shopify_step("orders/create", "a1c8e2f0-5a10-4c1e-9d01-000000001101", "2025-06-05T17:00:01Z", order,
                     "2025-06-05T17:00:02Z", "order #1012, 55.00"),
        gorgias_step("ticket-created", ticket("open", "2025-06-09T08:00:00.000000+00:00"), "2025-06-09T08:00:03Z",
                     "Gorgias: the customer asks to return #1012 (tags RETURN, size)"),
        gorgias_step("ticket-updated", ticket("closed", "2025-06-10T16:00:05.000000+00:00", "2025-06-10T16:00:05+00:00", [reply]),
                     "2025-06-10T16:00:08Z", "Gorgias: the agent sends a label and closes the ticket"),
    ]
    write_journey("helpdesk_return", "Shopify + Gorgias: a return asked for on a ticket naming #1012", SHOPIFY_ONLY, steps)


if __name__ == "__main__":
    shopify_partial_refund()
    shopify_costs_margin()
    shopify_full_refund_cancel()
    shopify_order_edit()
    woo_stripe()
    woo_paypal()
    shopify_adyen()
    stripe_refund_fails()
    stripe_inquiry_refund()
    shopify_presentment()
    combined_parcel()
    helpdesk_return()
