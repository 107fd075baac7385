-- Version 3: every KeyPackage records its Marmot profile (current or
-- legacy). Everything stored before profiles existed is legacy: the record
-- bodies and the entries of the owner indexes (which the count reads) get
-- `"profile": "legacy"`. Re-running it changes nothing.

UPDATE keypackages
   SET body = jsonb_set(body, '{profile}', '"legacy"')
 WHERE NOT (body ? 'profile');

UPDATE keypackage_owners AS o
   SET body = jsonb_set(
           o.body,
           '{available}',
           (SELECT coalesce(
                       jsonb_object_agg(
                           e.key,
                           CASE WHEN e.value ? 'profile' THEN e.value
                                ELSE e.value || '{"profile": "legacy"}'::jsonb END),
                       '{}'::jsonb)
              FROM jsonb_each(o.body -> 'available') AS e))
 WHERE EXISTS (SELECT 1
                 FROM jsonb_each(o.body -> 'available') AS e
                WHERE NOT (e.value ? 'profile'));
