"""ISO 4217 currency codes: the currencies an amount may be stated in.

A fixed list (ISO 4217, list one, as published in 2025): the circulating currencies only. Fund
codes (BOV, CLF, USN, ...), precious metals (XAU, ...), SDRs (XDR) and the testing and "no
currency" codes (XTS, XXX) are left out: no deal is booked in them. Currencies withdrawn before
the oldest accepted date (HRK, SLL, CUC, ...) are left out too.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_CIRCULATING = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
    GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
    MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR
    SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
"""
ISO_4217_CODES = frozenset(_CIRCULATING.split())


def _iso_4217(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 4217 currency code string, e.g. USD")
    if value not in ISO_4217_CODES:
        # Only the case is guessed: a near-miss spelling (XTS → TZS) is another currency.
        hint = f" (did you mean {value.upper()!r}?)" if value.upper() in ISO_4217_CODES else ""
        raise ValueError(f"{value[:16]!r} is not an ISO 4217 currency code{hint}; e.g. USD, EUR, GBP")
    return value


CurrencyCode = Annotated[
    str,
    BeforeValidator(_iso_4217),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted(ISO_4217_CODES),
            "description": "An ISO 4217 code of a circulating currency, upper case.",
        }
    ),
]
